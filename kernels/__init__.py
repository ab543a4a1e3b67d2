"""Triton kernels of ddpm-fast (installed as ``ddpm_fast.kernels``).

- ``q_sample``: the forward process, eps given or drawn in the kernel.
- ``mlp_forward``: the MLP with its step embeddings, one launch.
- ``p_sample_step``: one reverse step, one launch.
- ``sample_fused``: all T reverse steps, one launch.

In-kernel noise is Philox keyed by (seed, timestep, global row, stream); it is not
``torch.randn``'s stream: exact parity with the reference comes through injected noise.
"""
from ._runtime import INTERPRET, triton_unavailable_reason
from .mlp import mlp_forward
from .p_sample import p_sample_step
from .q_sample import q_sample
from .sampler import sample_fused
from .weights import DOT_MODES, MLPWeights, check_fused_layout, mlp_weights

__all__ = ["DOT_MODES", "INTERPRET", "MLPWeights", "check_fused_layout", "mlp_forward", "mlp_weights",
           "p_sample_step", "q_sample", "sample_fused", "triton_unavailable_reason"]
