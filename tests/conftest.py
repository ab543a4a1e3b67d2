"""Test settings. Triton kernels run in the CPU interpreter unless DDPM_FAST_DEVICE=cuda.

TRITON_INTERPRET must be set before triton is first imported, hence here, first.
"""
import os

DEVICE = os.environ.get("DDPM_FAST_DEVICE", "cpu")
if DEVICE == "cpu":
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(scope="session")
def device():
    if DEVICE == "cuda" and not torch.cuda.is_available():
        pytest.fail("DDPM_FAST_DEVICE=cuda but no CUDA GPU is available")
    return torch.device(DEVICE)
