"""Measure the figures behind tests/tolerances.py on this CPU's code path; print them as JSON.

    python3 tests/measure_tolerances.py [--draws 20]
    MKL_CBWR=COMPATIBLE python3 tests/measure_tolerances.py        # another CPU's MKL path
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python3 tests/measure_tolerances.py

Every figure is a float32 path against the float64 reference on the same injected noise:
- ``trajectory``: per point, the largest error past rtol * |reference| over every state of a
  run, for each bundled model, a fresh untrained one, and each sampler case (1000 points a
  draw); the quantiles that the parity rule reads (tests/helpers.py: the bulk quantile and
  the largest point);
- ``one_step``: the largest error of one model call and of one reference step, from the same state,
  as a fraction of TOLERANCES_ONE_STEP's atol + rtol * |expected| (1 is the bound);
- ``chunks``: ``eager`` in chunks of 7 and 450 rows against one piece (float32 both), the same
  trajectory measure;
- ``backends`` (``--backends``): the end points of other backends against float64, as ``trajectory``.
"""
import argparse
import json
import os
import platform
import sys
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported: the kernels run on the CPU
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import BULK_QUANTILE, SAMPLER_CASES, float64_model, point_errors, reference_plan_f64  # noqa: E402
from tolerances import TOLERANCES, TOLERANCES_ONE_STEP  # noqa: E402

import ddpm_fast as D  # noqa: E402
from ddpm_fast.samplers import make_plan  # noqa: E402

CASES = {"ddpm-100": {}, **SAMPLER_CASES}


def _quantiles(draws: list) -> dict:
    """``bulk``: the largest over the draws of the rule's statistic (the BULK_QUANTILE quantile of one
    draw's points, as assert_close reads it); ``p99`` and ``max`` over every point of every draw."""
    errors = torch.cat(draws)
    bulk = max(float(torch.quantile(d, BULK_QUANTILE, interpolation="higher")) for d in draws)
    return {"bulk": bulk, "p99": float(torch.quantile(errors, 0.99)), "max": float(errors.max()),
            "points": errors.numel()}


def _models():
    """(name, model, schedule): the bundled models, and a fresh (untrained) one as many tests use."""
    for name in ("seed", "best"):
        yield (name, *D.load_pretrained(name))
    torch.manual_seed(0)
    yield "untrained", D.MLPDiffusion(100), D.make_schedule()


def trajectory_errors(draws: int, n: int = 1000) -> dict:
    figures = {}
    for name, model, schedule in _models():
        for case, kwargs in CASES.items():
            plan = make_plan(schedule, **kwargs)
            errors, chunk_errors = [], []
            for draw in range(draws):
                gen = torch.Generator().manual_seed(1000 + draw)
                x_T = torch.randn(n, 2, generator=gen) * plan.prior_std
                noise = torch.randn(plan.steps, n, 2, generator=gen)
                expected = reference_plan_f64(model, schedule, x_T, noise, **kwargs)
                states = torch.stack(D.p_sample_loop(model, (n, 2), 100, schedule.betas,
                                                     schedule.one_minus_alphas_bar_sqrt, x_T=x_T, noise=noise,
                                                     **kwargs))
                errors.append(point_errors(states, expected, TOLERANCES["fp32"][1]))
                whole = states[-1]
                for chunk in (7, 450):
                    chunked = D.sample(model, n, x_T=x_T, noise=noise, backend="eager", chunk_size=chunk, **kwargs)
                    chunk_errors.append(point_errors(chunked, whole))
            figures[f"{name}/{case}"] = {"trajectory": _quantiles(errors), "chunks": _quantiles(chunk_errors)}
    return figures


def _fraction_of_bound(actual, expected) -> float:
    atol, rtol = TOLERANCES_ONE_STEP["fp32"]
    return float(((actual.double() - expected).abs() / (atol + rtol * expected.abs())).max())


def backend_errors(backends: list, draws: int, n: int = 1000) -> dict:
    figures = {}
    for name, model, schedule in _models():
        for case, kwargs in CASES.items():
            plan = make_plan(schedule, **kwargs)
            errors = {backend: [] for backend in backends}
            for draw in range(draws):
                gen = torch.Generator().manual_seed(3000 + draw)
                x_T = torch.randn(n, 2, generator=gen) * plan.prior_std
                noise = torch.randn(plan.steps, n, 2, generator=gen)
                expected = reference_plan_f64(model, schedule, x_T, noise, **kwargs)[-1]
                for backend in backends:
                    out = D.sample(model, n, x_T=x_T, noise=noise, backend=backend, **kwargs)
                    errors[backend].append(point_errors(out, expected, TOLERANCES["fp32"][1]))
            for backend in backends:
                figures[f"{name}/{case}/{backend}"] = _quantiles(errors[backend])
    return figures


def one_step_errors(draws: int) -> dict:
    """As tests/kernels/test_mlp.py draws them: a fresh model per size, every timestep class;
    torch's float32 forward (this CPU's BLAS) and the fused kernel (in the Triton interpreter)."""
    from ddpm_fast.kernels import mlp_forward, mlp_weights
    schedule = D.make_schedule()
    worst = {"mlp torch": 0.0, "mlp kernel": 0.0, "p_sample": 0.0}
    for draw in range(draws):
        for n in (1, 7, 257, 1000, 4097):
            torch.manual_seed(n + 7919 * draw)
            model = D.MLPDiffusion(100)
            model64 = float64_model(model)
            x, z = torch.randn(n, 2), torch.randn(n, 2)
            for t in (0, 1, 50, 99):
                eps64 = model64(x.double(), torch.tensor([t]))
                pairs = {"mlp torch": model(x, torch.tensor([t])),
                         "mlp kernel": mlp_forward(mlp_weights(model), x, t)}
                b = schedule.betas.double()[t]
                coeff = b / schedule.one_minus_alphas_bar_sqrt.double()[t]
                step64 = (x.double() - coeff * eps64) / (1 - b).sqrt() + b.sqrt() * z.double()
                step32 = D.p_sample(model, x, t, schedule.betas, schedule.one_minus_alphas_bar_sqrt, noise=z)
                for key, actual in pairs.items():
                    worst[key] = max(worst[key], _fraction_of_bound(actual, eps64))
                worst["p_sample"] = max(worst["p_sample"], _fraction_of_bound(step32, step64))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=20, help="draws of 1000 points per model and sampler case")
    parser.add_argument("--backends", default="", help="comma-separated backends to measure as well, e.g. "
                                                           "compile,triton-fused")
    parser.add_argument("--backend-draws", type=int, default=2)
    parser.add_argument("--one-step-draws", type=int, default=1, help="fresh models per size for the one-step figures")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    path = {k: os.environ[k] for k in ("MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS") if k in os.environ}
    print(json.dumps({"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "path": path,
                      "one_step": one_step_errors(args.one_step_draws),
                      "cases": trajectory_errors(args.draws) if args.draws else {},
                      "backends": backend_errors([b for b in args.backends.split(",") if b], args.backend_draws)},
                     indent=1))


if __name__ == "__main__":
    main()
