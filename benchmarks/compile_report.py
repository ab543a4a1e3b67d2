"""Compile every Triton kernel for an NVIDIA target without a GPU, and report its resources.

    python benchmarks/compile_report.py [ARCH] [--all]   # ARCH default 90 (H100/H200)

Lowers each kernel variant (precision, injected or drawn noise, trajectory) through
Triton to PTX and a cubin, as the GPU would at its first launch, and prints shared memory,
registers, spills and whether tensor-core instructions were emitted. Catches what the CPU
interpreter cannot (non-constexpr globals, unsupported ops, resource blow-ups); exits 1 if a
kernel fails to compile or needs more shared memory than a block may have. Without
``--all`` only the launchers' own configurations are compiled (tests/kernels/test_compile.py
runs that in CI). Must run without TRITON_INTERPRET.
"""
import os
import re
import subprocess
import sys

if os.environ.get("TRITON_INTERPRET") == "1":
    sys.exit("compile_report: unset TRITON_INTERPRET (it makes @triton.jit build interpreter functions)")

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from ddpm_fast.kernels._runtime import DEFAULT_BLOCK_M, DEFAULT_NUM_STAGES, DEFAULT_NUM_WARPS  # noqa: E402
from ddpm_fast.kernels.mlp import _mlp_kernel  # noqa: E402
from ddpm_fast.kernels.p_sample import _p_sample_kernel  # noqa: E402
from ddpm_fast.kernels.pack import DOT_MODES  # noqa: E402
from ddpm_fast.kernels.q_sample import _q_sample_kernel  # noqa: E402
from ddpm_fast.kernels.sampler import _sampler_kernel  # noqa: E402

# Shared memory one block may use (opt-in maximum) per target architecture.
SMEM_LIMIT = {80: 166912, 86: 101376, 89: 101376, 90: 232448}
INT64_POINTERS = {"t_ptr", "seed_ptr"}
WEIGHT_POINTERS = {"w2_ptr", "w3_ptr"}  # bfloat16 in the bf16 pack


def signature(kernel, constexprs: dict) -> dict:
    """Argument types as the launcher passes them: float32 tensors, int64 t/seed, int32 scalars."""
    sig = {}
    for param in kernel.params:
        name = param.name
        if name in constexprs:
            sig[name] = "constexpr"
        elif name.endswith("_ptr"):
            bf16 = name in WEIGHT_POINTERS and constexprs.get("DOT") == "bf16"
            sig[name] = "*i64" if name in INT64_POINTERS else ("*bf16" if bf16 else "*fp32")
        else:
            sig[name] = "i32"
    return sig


def ptxas_report(cubin_ptx: str) -> str:
    """Registers and spills from ptxas -v (the newest ptxas Triton ships)."""
    bin_dir = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    ptxas = next((os.path.join(bin_dir, p) for p in ("ptxas-blackwell", "ptxas")
                  if os.path.exists(os.path.join(bin_dir, p))), None)
    if ptxas is None:
        return "no ptxas"
    arch = re.search(r"\.target (sm_\w+)", cubin_ptx).group(1)
    path = "/tmp/ddpm_fast_compile_report.ptx"
    with open(path, "w") as f:
        f.write(cubin_ptx)
    out = subprocess.run([ptxas, f"-arch={arch}", "-v", path, "-o", path + ".cubin"], capture_output=True, text=True)
    text = out.stdout + out.stderr
    regs = re.search(r"Used (\d+) registers", text)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)
    if not regs:
        return "ptxas: " + text.strip().splitlines()[-1]
    return f"regs {regs.group(1)}, spill stores/loads {spills.group(1)}/{spills.group(2)} B" if spills else \
        f"regs {regs.group(1)}"


def variants(everything: bool):
    """(name, precision, BLOCK_M, warps, kernel, constexprs): the launchers' configurations,
    plus, with ``everything``, the larger block of the sampler."""
    bm, warps = DEFAULT_BLOCK_M, DEFAULT_NUM_WARPS
    for precision, dot in DOT_MODES.items():
        yield "sampler", precision, bm, warps, _sampler_kernel, \
            {"T": 100, "H": 128, "DOT": dot, "NOISE_GIVEN": False, "KEEP_EVERY": 0, "BLOCK_M": bm}
        yield "sampler+noise+traj", precision, bm, warps, _sampler_kernel, \
            {"T": 100, "H": 128, "DOT": dot, "NOISE_GIVEN": True, "KEEP_EVERY": 1, "BLOCK_M": bm}
        if everything:
            yield "sampler", precision, 128, 8, _sampler_kernel, \
                {"T": 100, "H": 128, "DOT": dot, "NOISE_GIVEN": False, "KEEP_EVERY": 0, "BLOCK_M": 128}
        yield "p_sample", precision, bm, warps, _p_sample_kernel, \
            {"H": 128, "DOT": dot, "NOISE_GIVEN": False, "BLOCK_M": bm}
        yield "mlp", precision, bm, warps, _mlp_kernel, {"H": 128, "DOT": dot, "BLOCK_M": bm}
    for given in (False, True):
        yield "q_sample", "fp32", 1024, 4, _q_sample_kernel, {"EPS_GIVEN": given, "BLOCK": 1024}


def main(arch: int = 90, everything: bool = False) -> int:
    target = GPUTarget("cuda", arch, 32)
    print(f"triton {triton.__version__}, target sm_{arch}")
    failures = 0
    for name, precision, block_m, warps, kernel, constexprs in variants(everything):
        names = [p.name for p in kernel.params]
        source = ASTSource(fn=kernel, signature=signature(kernel, constexprs),
                           constexprs={(names.index(k),): v for k, v in constexprs.items()})
        label = f"{name:<19}{precision:<6}BLOCK={block_m:<5}warps={warps}"
        try:
            compiled = triton.compile(source, target=target,
                                      options={"num_warps": warps, "num_stages": DEFAULT_NUM_STAGES})
        except Exception as err:  # reported, and the exit code says so
            failures += 1
            print(f"{label}  FAILED: {str(err).splitlines()[0][:300]}")
            continue
        ptx = compiled.asm["ptx"]
        units = "wgmma" if "wgmma" in ptx else ("mma" if "mma.sync" in ptx else "fma only")
        smem = compiled.metadata.shared
        too_much = smem > SMEM_LIMIT.get(arch, 232448)
        failures += too_much
        print(f"{label}  smem {smem:>7} B{' (OVER THE LIMIT)' if too_much else ''}, {ptxas_report(ptx)}, "
              f"matrix units: {units}")
    return 1 if failures else 0


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--all"]
    sys.exit(main(int(args[0]) if args else 90, everything="--all" in sys.argv))
