"""The kernels lower to sm_90 code (H100/H200) as launched, within their resource budgets.

The interpreter proves indexing and algebra, not that the kernels compile for a GPU: a
non-constexpr global, an op the backend lacks, shared memory over a block's limit or
kilobytes of register spills only show there. This compiles one variant of each kernel in
each precision with Triton's own compiler and ptxas, no GPU needed, in a subprocess without
TRITON_INTERPRET; the report exits 1 on a failed compile or a broken smem/spill budget.
Compile seconds are printed, not asserted: they depend on how busy the machine is.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPORT = Path(__file__).resolve().parents[2] / "benchmarks" / "compile_report.py"


@pytest.mark.skipif(not REPORT.exists(), reason="benchmarks/compile_report.py is not in this tree")
def test_kernels_compile_for_sm90_within_budgets():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    done = subprocess.run([sys.executable, str(REPORT), "90", "--quick"], env=env, capture_output=True, text=True,
                          timeout=1800)
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.split(" ")[0] in
             ("sampler+noise+traj", "sampler:unipc", "step:unipc", "mlp", "q_sample")]
    # the ddpm and UniPC fused samplers, the UniPC step and the MLP in fp32, tf32 and bf16; q_sample
    assert len(lines) == 4 * 3 + 1
    assert all(" regs " in line and "FAILED" not in line for line in lines)
    assert all("wgmma" in line for line in lines if not line.startswith("q_sample"))  # tensor cores in every precision
