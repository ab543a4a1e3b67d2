"""The kernels lower to sm_90 code (H100/H200) as launched, within a block's shared memory.

The interpreter proves indexing and algebra, not that the kernels compile for a GPU: a
non-constexpr global or an op the backend lacks only fails there. This compiles every
launcher configuration with Triton's own compiler and ptxas, no GPU needed, in a
subprocess without TRITON_INTERPRET.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPORT = Path(__file__).resolve().parents[2] / "benchmarks" / "compile_report.py"


@pytest.mark.skipif(not REPORT.exists(), reason="benchmarks/compile_report.py is not in this tree")
def test_kernels_compile_for_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    done = subprocess.run([sys.executable, str(REPORT), "90"], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert done.stdout.count("smem") == 14  # every launcher configuration compiled
