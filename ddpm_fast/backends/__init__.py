"""Sampling backends: each turns a ``SamplingJob`` into x_0, for any sampler plan.

``registry`` holds the types and the registry; importing this package registers the built-in
backends (``constants.BACKENDS``), one module each.
"""
from ..constants import PRECISIONS
from . import compiled, cpu_fused, cudagraph, eager, triton_backend  # noqa: F401  (each registers itself)
from .registry import (
                       AUTO_ORDER,
                       MEASURED_ORDER_FILE,
                       UNMEASURED_CUDA_ORDER,
                       Backend,
                       SamplingJob,
                       auto_order,
                       available_backends,
                       backend_names,
                       get_backend,
                       register_backend,
                       resolve_backend,
)

__all__ = ["AUTO_ORDER", "MEASURED_ORDER_FILE", "PRECISIONS", "UNMEASURED_CUDA_ORDER", "Backend", "SamplingJob",
           "auto_order",
           "available_backends", "backend_names", "get_backend", "register_backend", "resolve_backend"]
