"""Triton kernels of ddpm-fast (installed as ``ddpm_fast.kernels``).

- ``q_sample``: the forward process, eps given or drawn in the kernel.
- ``mlp_forward``: the MLP with its step embeddings, one launch.
- ``sampler_step``: one step of any sampler plan (``ddpm_fast.samplers``), one launch.
- ``sample_fused``: all K steps of any sampler plan, one launch.

In-kernel noise is Philox keyed by (seed, timestep, global row, stream); it is not
``torch.randn``'s stream: exact parity with the reference comes through injected noise.
"""
from ._runtime import INTERPRET, seed_tensor, triton_unavailable_reason
from .mlp import mlp_forward
from .q_sample import q_sample
from .sampler import sample_fused
from .sampler_step import new_state, sampler_step
from .weights import DOT_MODES, MLPWeights, check_fused_layout, mlp_weights

__all__ = ["DOT_MODES", "INTERPRET", "MLPWeights", "check_fused_layout", "mlp_forward", "mlp_weights",
           "new_state", "q_sample", "sample_fused",
           "sampler_step", "seed_tensor", "triton_unavailable_reason"]
