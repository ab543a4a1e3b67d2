"""Compile every Triton kernel for an NVIDIA target without a GPU, and report its resources.

    python benchmarks/compile_report.py [ARCH] [--quick] [--ieee]   # ARCH default 90 (H100/H200)

Lowers each kernel variant the launchers use (precision, injected or drawn noise,
trajectory kept) through Triton to PTX and a cubin, as the GPU would at its first launch,
and prints one line per variant: compile seconds, shared memory, registers, spills, the
matrix instructions emitted and how many blocks fit on one SM. Catches what the CPU
interpreter cannot (non-constexpr globals, unsupported ops, resource blow-ups).

Exits 1 if a variant fails to compile or breaks a budget: more shared memory than a block
may have, or more than SPILL_BUDGET bytes of spill stores per thread. The compile-time
budget (COMPILE_BUDGET_S on a 2-core machine) is printed against each line but not
enforced: wall time depends on how busy the machine is. ``--quick`` compiles one variant
of each kernel in each precision (CI); ``--ieee`` adds the old IEEE-fp32 FMA form for
comparison (slow: minutes per kernel). Must run without TRITON_INTERPRET.
"""
import contextlib
import io
import os
import re
import shutil
import sys
import tempfile
import time

if os.environ.get("TRITON_INTERPRET") == "1":
    sys.exit("compile_report: unset TRITON_INTERPRET (it makes @triton.jit build interpreter functions)")
# A cold cache of our own: every variant really compiles (a first launch's cost), and ptxas
# reports its registers and spills (a cache hit runs no ptxas).
os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="ddpm_fast_compile_report_")

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from ddpm_fast.kernels._runtime import DEFAULT_NUM_STAGES, GPU_BLOCK_M, GPU_NUM_WARPS  # noqa: E402
from ddpm_fast.kernels.mlp import _mlp_kernel  # noqa: E402
from ddpm_fast.kernels.q_sample import _q_sample_kernel  # noqa: E402
from ddpm_fast.kernels.sampler import _sampler_kernel  # noqa: E402
from ddpm_fast.kernels.sampler_step import _sampler_step_kernel  # noqa: E402
from ddpm_fast.kernels.weights import DOT_MODES  # noqa: E402

# Per target: (shared memory one block may use (opt-in maximum), shared memory per SM,
# 32-bit registers per SM, resident blocks per SM, resident warps per SM).
SM_LIMITS = {80: (166912, 167936, 65536, 32, 64), 86: (101376, 102400, 65536, 16, 48),
             89: (101376, 102400, 65536, 24, 48), 90: (232448, 233472, 65536, 32, 64)}
SMEM_RESERVED_PER_BLOCK = 1024  # the runtime's own share of each block's shared memory (sm_80+)
SPILL_BUDGET = 2048  # bytes of spill stores per thread
COMPILE_BUDGET_S = 15.0
INT64_POINTERS = {"t_ptr", "seed_ptr"}
# Integer arguments the kernels let Triton specialize, and the value the launchers pass:
# divisible by 16, so the compiler may assume it (every other integer is do_not_specialize).
ALIGNED_INTS = {"w_step_stride"}


def signature(kernel, constexprs: dict) -> tuple[dict, dict]:
    """Argument types and specializations as a launch makes them: float32 tensors (int64 t and
    seed), 16-byte aligned as every torch allocation is; int32 scalars."""
    sig, attrs = {}, {}
    for index, param in enumerate(kernel.params):
        name = param.name
        if name in constexprs:
            sig[name] = "constexpr"
            continue
        if name.endswith("_ptr"):
            sig[name] = "*i64" if name in INT64_POINTERS else "*fp32"
        else:
            sig[name] = "i32"
        if name.endswith("_ptr") or name in ALIGNED_INTS:
            attrs[(index,)] = [["tt.divisibility", 16]]
    return sig, attrs


def ptxas_resources(log: str) -> dict:
    """Registers and spill bytes from ptxas -v's log (Triton runs ptxas with -v)."""
    regs = re.search(r"Used (\d+) registers", log)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    return {"regs": int(regs.group(1)) if regs else None,
            "spill_stores": int(spills.group(1)) if spills else 0,
            "spill_loads": int(spills.group(2)) if spills else 0}


def blocks_per_sm(arch: int, regs: int, smem: int, warps: int) -> tuple[int, str]:
    """Resident blocks per SM and what limits them (registers are allocated 8 per thread at a time)."""
    _, smem_per_sm, regs_per_sm, max_blocks, max_warps = SM_LIMITS.get(arch, SM_LIMITS[90])
    regs_per_block = -(-regs // 8) * 8 * 32 * warps
    limits = {"registers": regs_per_sm // regs_per_block,
              "shared memory": smem_per_sm // (smem + SMEM_RESERVED_PER_BLOCK),
              "warps": max_warps // warps, "blocks": max_blocks}
    limiter = min(limits, key=limits.get)
    return limits[limiter], limiter


# Plan structures (ddpm_fast.samplers): the ddpm's 100 noisy steps; DPM-Solver++(2M) (one
# previous estimate) and UniPC (two, and the corrected point) at 10 steps, no noise.
STRUCTURES = {"ddpm": dict(K=100, NOISY=True, HISTORY=0, CORRECTOR=False),
              "dpm++2m": dict(K=10, NOISY=False, HISTORY=1, CORRECTOR=False),
              "unipc": dict(K=10, NOISY=False, HISTORY=2, CORRECTOR=True)}


def variants(quick: bool, ieee: bool):
    """(name, precision, BLOCK_M, warps, kernel, constexprs) for each configuration the launchers use."""
    bm, warps = GPU_BLOCK_M, GPU_NUM_WARPS
    modes = dict(DOT_MODES, **({"ieee-fp32": "ieee"} if ieee else {}))
    for precision, dot in modes.items():
        for noise, keep in ((True, 1), (False, 0)) if quick else ((False, 0), (True, 0), (False, 1), (True, 1)):
            name = "sampler" + ("+noise" if noise else "") + ("+traj" if keep else "")
            if quick and not noise:
                continue
            yield name, precision, bm, warps, _sampler_kernel, \
                {**STRUCTURES["ddpm"], "H": 128, "DOT": dot, "NOISE_GIVEN": noise, "KEEP_EVERY": keep, "BLOCK_M": bm}
        for sampler in ("unipc",) if quick else ("dpm++2m", "unipc"):
            yield f"sampler:{sampler}", precision, bm, warps, _sampler_kernel, \
                {**STRUCTURES[sampler], "H": 128, "DOT": dot, "NOISE_GIVEN": False, "KEEP_EVERY": 0, "BLOCK_M": bm}
        for sampler in ("unipc",) if quick else ("ddpm", "unipc"):
            structure = {k: v for k, v in STRUCTURES[sampler].items() if k != "K"}
            yield f"step:{sampler}", precision, bm, warps, _sampler_step_kernel, \
                {**structure, "H": 128, "DOT": dot, "NOISE_GIVEN": False, "BLOCK_M": bm}
        yield "mlp", precision, bm, warps, _mlp_kernel, {"H": 128, "DOT": dot, "BLOCK_M": bm}
    for given in (False,) if quick else (False, True):
        yield "q_sample" + ("+eps" if given else ""), "fp32", 1024, 4, _q_sample_kernel, \
            {"EPS_GIVEN": given, "BLOCK": 1024}


def compile_variant(kernel, constexprs: dict, arch: int, warps: int):
    """Compile like a first launch; returns (compiled kernel, seconds, ptxas log)."""
    names = [p.name for p in kernel.params]
    sig, attrs = signature(kernel, constexprs)
    source = ASTSource(fn=kernel, signature=sig, attrs=attrs,
                       constexprs={(names.index(k),): v for k, v in constexprs.items()})
    log = io.StringIO()
    triton.knobs.nvidia.dump_ptxas_log = True  # Triton prints ptxas -v's report to stdout
    start = time.perf_counter()
    with contextlib.redirect_stdout(log):
        compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32),
                                  options={"num_warps": warps, "num_stages": DEFAULT_NUM_STAGES})
    return compiled, time.perf_counter() - start, log.getvalue()


def main(arch: int = 90, quick: bool = False, ieee: bool = False) -> int:
    print(f"triton {triton.__version__}, target sm_{arch}, budgets: compile <= {COMPILE_BUDGET_S:.0f} s "
          f"(not enforced), spill stores <= {SPILL_BUDGET} B/thread, smem <= {SM_LIMITS[arch][0]} B/block")
    failures = 0
    total = time.perf_counter()
    for name, precision, block_m, warps, kernel, constexprs in variants(quick, ieee):
        label = f"{name:<20}{precision:<10}BLOCK={block_m:<5}warps={warps}"
        try:
            compiled, seconds, log = compile_variant(kernel, constexprs, arch, warps)
        except Exception as err:  # noqa: BLE001  (reported, and the exit code says so)
            failures += 1
            print(f"{label}  FAILED: {str(err).splitlines()[0][:300]}", flush=True)
            continue
        ptx = compiled.asm["ptx"]
        units = "wgmma" if "wgmma" in ptx else ("mma" if "mma.sync" in ptx else "fma only")
        smem = compiled.metadata.shared
        res = ptxas_resources(log)
        problems = []
        if smem > SM_LIMITS.get(arch, SM_LIMITS[90])[0]:
            problems.append("SMEM OVER THE LIMIT")
        if res["regs"] is None:
            problems.append("NO PTXAS REPORT")
        if res["spill_stores"] > SPILL_BUDGET:
            problems.append("SPILLS OVER BUDGET")
        failures += bool(problems) and precision != "ieee-fp32"  # the old form is shown, not held to budget
        slow = " (over budget)" if seconds > COMPILE_BUDGET_S else ""
        occupancy = blocks_per_sm(arch, res["regs"], smem, warps) if res["regs"] else (0, "unknown")
        print(f"{label}  compile {seconds:5.1f} s{slow}, smem {smem:>6} B, regs {res['regs']}, spill stores/loads "
              f"{res['spill_stores']}/{res['spill_loads']} B, {units}, {occupancy[0]} blocks/SM "
              f"(by {occupancy[1]}){'  ' + ', '.join(problems) if problems else ''}", flush=True)
    print(f"total {time.perf_counter() - total:.1f} s")
    shutil.rmtree(os.environ["TRITON_CACHE_DIR"], ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    flags = {a for a in sys.argv[1:] if a.startswith("--")}
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    sys.exit(main(int(args[0]) if args else 90, quick="--quick" in flags, ieee="--ieee" in flags))
