"""This CPU's matmul ceilings at the model's shape, and where one sampler step's
time goes (eager fp32, eager bf16 autocast), by row block size. Prints one JSON line per case."""
import json
import statistics
import sys
import time

import torch

import ddpm_fast as D
from ddpm_fast.backends._step import solver_step
from ddpm_fast.samplers import make_plan

FLOP = 66_560  # per point-step (docs/model.md)


def median_s(fn, repeats=15, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul(n, dtype):
    a = torch.randn(n, 128).to(dtype)
    b = torch.randn(128, 128).to(dtype)
    seconds = median_s(lambda: a @ b)
    return 2 * n * 128 * 128 / seconds / 1e9


def step_rate(model, plan, n, precision):
    x = torch.randn(n, 2)
    timesteps, coef = plan.tables(torch.device("cpu"))
    z = torch.randn(n, 2)
    ctx = torch.autocast("cpu", torch.bfloat16) if precision == "bf16" else torch.no_grad()

    def one():
        with torch.no_grad(), ctx:
            solver_step(model, x, (None, None, None), timesteps[5:6], coef[5], z, 0, False)
    try:
        seconds = median_s(one)
    except Exception as err:  # noqa: BLE001
        return {"error": str(err)[:200]}
    return {"gflops": n * FLOP / seconds / 1e9, "ms": seconds * 1e3}


def compiled_rate(model, plan, n, precision, freezing, mode="default"):
    import copy

    import torch._inductor.config as inductor
    inductor.freezing = freezing
    torch._dynamo.reset()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    m = copy.deepcopy(model).to(dtype).eval()
    timesteps, coef = plan.tables(torch.device("cpu"))

    def step(x, t_index, c, z):  # x, the update and z in float32; the model in dtype
        eps = m(x.to(dtype), t_index).float()
        return c[0] * x + c[1] * eps + c[11] * z

    fn = torch.compile(step, fullgraph=True, dynamic=False, mode=mode)
    x, z = torch.randn(n, 2), torch.randn(n, 2)
    start = time.perf_counter()
    with torch.no_grad():
        fn(x, timesteps[5:6], coef[5], z)
    compile_s = time.perf_counter() - start
    with torch.no_grad():
        seconds = median_s(lambda: fn(x, timesteps[5:6], coef[5], z))
    return {"gflops": round(n * FLOP / seconds / 1e9, 1), "ms": round(seconds * 1e3, 3),
            "compile_s": round(compile_s, 1)}


def main():
    torch.manual_seed(0)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "capability": torch.backends.cpu.get_cpu_capability()}))
    for n in (1024, 4096, 16384, 65536, 262144):
        print(json.dumps({"matmul_n": n, "fp32_gflops": round(matmul(n, torch.float32), 1),
                          "bf16_gflops": round(matmul(n, torch.bfloat16), 1)}), flush=True)
    model, schedule = D.load_pretrained()
    plan = make_plan(schedule)
    for n in (1024, 4096, 16384, 65536):
        for precision in ("fp32", "bf16"):
            print(json.dumps({"step_n": n, "precision": precision, "eager": step_rate(model, plan, n, precision)}),
                  flush=True)
    for n in (4096, 16384):
        for precision in ("fp32", "bf16"):
            for freezing in (False, True):
                print(json.dumps({"compiled_n": n, "precision": precision, "freezing": freezing,
                                  **compiled_rate(model, plan, n, precision, freezing)}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
