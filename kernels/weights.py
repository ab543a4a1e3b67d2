"""The model's parameters as the fused kernels read them: views, nothing copied or cached.

The kernels read nn.Linear's own weights (as W^T), biases and embedding tables at every
launch, and do the per-precision work (the TF32 split, the bfloat16 cast) on chip. So
nothing can go stale: an optimizer step, ``load_state_dict``, an EMA update through
``p.data`` or a replaced parameter are all seen by the next launch, and by a captured
CUDA graph at its next replay.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

# precision name -> how the kernels multiply the two H x H layers
DOT_MODES = {
    "fp32": "tf32x3",  # 3xTF32: hi/lo split, three TF32 tensor-core products, float32-level error
    "tf32": "tf32",  # one TF32 product (10-bit mantissas)
    "bf16": "bf16",  # bfloat16 operands, float32 accumulation
}


def dot_mode(precision: str) -> str:
    if precision not in DOT_MODES:
        raise ValueError(f"unknown precision {precision!r}; known precisions: {', '.join(DOT_MODES)}")
    return DOT_MODES[precision]


@dataclass(frozen=True)
class MLPWeights:
    w1: torch.Tensor  # [H, 2] linears[0].weight
    b1: torch.Tensor  # [H]
    e1: torch.Tensor  # [T, H] step_embeddings[0].weight
    w2: torch.Tensor  # [H, H] linears[2].weight
    b2: torch.Tensor  # [H]
    e2: torch.Tensor  # [T, H]
    w3: torch.Tensor  # [H, H] linears[4].weight
    b3: torch.Tensor  # [H]
    e3: torch.Tensor  # [T, H]
    w4: torch.Tensor  # [2, H] linears[6].weight
    b4: torch.Tensor  # [2]
    n_steps: int
    hidden: int

    @property
    def device(self) -> torch.device:
        return self.w2.device

    def pointers(self):
        """The kernels' weight arguments, in _mlp_eps's order."""
        return (self.w1, self.b1, self.e1, self.w2, self.b2, self.e2, self.w3, self.b3, self.e3,
                self.w4, self.b4)


def check_fused_layout(model: nn.Module) -> tuple[int, int]:
    """(n_steps, hidden) of a model in the SPEC's MLP layout; raises for anything else."""
    def unsupported(why):
        return NotImplementedError(f"model not supported by the fused kernels: {why}")

    linears = getattr(model, "linears", None)
    embeddings = getattr(model, "step_embeddings", None)
    if not isinstance(linears, nn.ModuleList) or not isinstance(embeddings, nn.ModuleList):
        raise unsupported("expected ModuleLists 'linears' and 'step_embeddings' (MLPDiffusion's layout)")
    if len(linears) != 7 or len(embeddings) != 3:
        raise unsupported(f"expected 7 'linears' entries and 3 embeddings, got {len(linears)} and {len(embeddings)}")
    layers, acts = linears[0::2], linears[1::2]
    if not all(isinstance(m, nn.Linear) and m.bias is not None for m in layers) or \
            not all(isinstance(m, nn.ReLU) for m in acts):
        raise unsupported("expected Linear (with bias) and ReLU alternating")
    hidden = layers[0].out_features
    shapes = [(m.in_features, m.out_features) for m in layers]
    if shapes != [(2, hidden), (hidden, hidden), (hidden, hidden), (hidden, 2)]:
        raise unsupported(f"expected Linear shapes 2->H->H->H->2, got {shapes}")
    if hidden < 16 or hidden & (hidden - 1):
        raise unsupported(f"hidden width {hidden} must be a power of two >= 16")
    n_steps = embeddings[0].num_embeddings
    if any(not isinstance(e, nn.Embedding) or e.embedding_dim != hidden or e.num_embeddings != n_steps
           for e in embeddings):
        raise unsupported(f"expected 3 nn.Embedding({n_steps}, {hidden})")
    if any(p.dtype != torch.float32 for p in model.parameters()):
        raise TypeError("the fused kernels need a float32 model; got parameters of "
                        f"{sorted({str(p.dtype) for p in model.parameters()})}")
    devices = {p.device for p in model.parameters()}
    if len(devices) > 1:
        raise ValueError(f"the model's parameters are on several devices: {sorted(map(str, devices))}")
    return n_steps, hidden


def mlp_weights(model: nn.Module) -> MLPWeights:
    """The model's parameters for the kernels (views; a copy only of a non-contiguous one)."""
    n_steps, hidden = check_fused_layout(model)
    lin, emb = model.linears, model.step_embeddings
    with torch.no_grad():  # .contiguous() of a parameter must not record autograd history
        tensors = dict(w1=lin[0].weight, b1=lin[0].bias, e1=emb[0].weight,
                       w2=lin[2].weight, b2=lin[2].bias, e2=emb[1].weight,
                       w3=lin[4].weight, b3=lin[4].bias, e3=emb[2].weight,
                       w4=lin[6].weight, b4=lin[6].bias)
        tensors = {name: p.detach().contiguous() for name, p in tensors.items()}
    return MLPWeights(**tensors, n_steps=n_steps, hidden=hidden)
