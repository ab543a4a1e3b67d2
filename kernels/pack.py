"""Model weights packed once per (model, precision, device) for the fused kernels."""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import nn

# precision name -> tl.dot mode used by the kernels
DOT_MODES = {"fp32": "ieee", "tf32": "tf32", "bf16": "bf16"}


@dataclass(frozen=True)
class MLPPack:
    w1: torch.Tensor  # [2, H] float32, W1^T
    emb: torch.Tensor  # [3, T, H] float32, step_embeddings[k] + bias of linears[2k]
    w2: torch.Tensor  # [H, H] W2^T, float32 (fp32, tf32) or bfloat16 (bf16)
    w3: torch.Tensor  # [H, H] W3^T
    w4: torch.Tensor  # [2, H] float32
    b4: torch.Tensor  # [2] float32
    n_steps: int
    hidden: int
    precision: str

    @property
    def dot_mode(self) -> str:
        return DOT_MODES[self.precision]

    def pointers(self):
        return self.w1, self.emb, self.w2, self.w3, self.w4, self.b4


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
    return n_steps, hidden


def _write_pack(model: nn.Module, pack: MLPPack | None, precision: str) -> MLPPack:
    lin = model.linears
    dot_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    with torch.no_grad():
        fresh = dict(
            w1=lin[0].weight.t().float(),
            emb=torch.stack([e.weight + lin[2 * k].bias for k, e in enumerate(model.step_embeddings)]),
            w2=lin[2].weight.t().to(dot_dtype), w3=lin[4].weight.t().to(dot_dtype),
            w4=lin[6].weight.float(), b4=lin[6].bias.float())
        if pack is None:
            n_steps, hidden = fresh["emb"].shape[1:]
            return MLPPack(**{k: v.contiguous() for k, v in fresh.items()}, n_steps=n_steps,
                           hidden=hidden, precision=precision)
        for name, value in fresh.items():  # in place, so captured graphs see the new weights
            getattr(pack, name).copy_(value)
        return pack


_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def _weights_version(model: nn.Module) -> tuple:
    # _version counts in-place writes (optimizer steps, load_state_dict); data_ptr changes
    # when a parameter is replaced or the model moves.
    return tuple((p.data_ptr(), p._version) for p in model.parameters())


def pack_mlp(model: nn.Module, precision: str = "fp32") -> MLPPack:
    """The packed weights of ``model``, cached; re-packed in place when the weights changed."""
    if precision not in DOT_MODES:
        raise ValueError(f"unknown precision {precision!r}; known precisions: {', '.join(DOT_MODES)}")
    check_fused_layout(model)
    device = next(model.parameters()).device
    entries = _CACHE.setdefault(model, {})
    key = (precision, device)
    version = _weights_version(model)
    cached = entries.get(key)
    if cached is not None and cached[0] == version:
        return cached[1]
    same_shapes = cached is not None and cached[1].emb.shape[1:] == model.step_embeddings[0].weight.shape
    pack = _write_pack(model, cached[1] if same_shapes else None, precision)
    entries[key] = (version, pack)
    return pack
