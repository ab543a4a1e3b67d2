"""Fold the GPU check's outputs into summary.json and auto_order.json; print the short table last."""
import json
import os
import sys
import xml.etree.ElementTree as ET


def test_counts(path):
    if not os.path.exists(path):
        return {"error": "no junit XML: the test run did not finish"}
    suite = ET.parse(path).getroot()
    suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    counts["failed_cases"] = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
                              if c.find("failure") is not None or c.find("error") is not None]
    return counts


def load(path):
    return json.load(open(path)) if os.path.exists(path) else None


def median(rows, backend, n, precision, sampler="ddpm"):
    row = next((r for r in rows if (r["backend"], r["n"], r["precision"], r.get("sampler", "ddpm"))
                == (backend, n, precision, sampler)), None)
    return row["median_s"] if row else None


def targets(bench):
    rows = bench["rows"]
    eager = median(rows, "eager", 10_000, "fp32")
    out = {}
    for precision, goal in (("fp32", 8), ("tf32", 30), ("bf16", 30)):
        fused = median(rows, "triton-fused", 10_000, precision)
        key = f"triton-fused {precision} vs eager fp32, N=1e4 (goal {goal}x)"
        out[key] = eager / fused if eager and fused else None
    graph = median(rows, "cudagraph", 10_000, "fp32")
    fused = median(rows, "triton-fused", 10_000, "fp32")
    out["cudagraph vs eager, N=1e4 fp32 (goal 3x)"] = eager / graph if eager and graph else None
    out["triton-fused vs cudagraph, N=1e4 fp32 (goal 3x)"] = graph / fused if graph and fused else None
    for precision in ("fp32", "bf16"):
        ddpm, dpm = (median(rows, "triton-fused", 1_000_000, precision, s) for s in ("ddpm", "dpm++2m"))
        out[f"triton-fused {precision} N=1e6: samples/s of 10-step dpm++2m over 100-step ddpm"] = \
            ddpm / dpm if ddpm and dpm else None
    for r in rows:
        if r["backend"] == "triton-fused" and r["n"] == 1_000_000 and r.get("sampler", "ddpm") == "ddpm":
            out[f"triton-fused {r['precision']} N=1e6 fraction of matmul ceiling (goal 0.5)"] = r["ceiling_fraction"]
    return out


def train_targets(train):
    """The issue's training goals from `bench-train` rows (steady-state epochs, extrapolated)."""
    rows = {(r["backend"], r["batch_size"]): r for r in train.get("rows", [])}
    out = {}
    graph = rows.get(("cudagraph", 128))
    out["seed recipe (316,000 steps, batch 128) on cudagraph, s (goal <= 60)"] = \
        graph["seed_recipe_steps_s"] if graph else None
    for backend in ("cudagraph", "compile"):
        row, eager = rows.get((backend, 128)), rows.get(("eager", 128))
        out[f"training steps/s, batch 128: {backend} over eager"] = \
            eager["median_s"] / row["median_s"] if row and eager else None
    fast = rows.get(("cudagraph", 1024))
    # bench-train runs the seed recipe's optimizer; the fast recipe adds a schedule lookup and an EMA per step
    out["600 epochs at batch 1024 (the fast recipe's steps) on cudagraph, s"] = 600 * fast["median_s"] if fast else None
    return out


def _write(path, data):
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, indent=2)
    os.replace(path + ".tmp", path)


def main(out, train_path=None, students_path=None, distill_path=None):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from ddpm_fast.bench import auto_order_from
    measure, bench = load(os.path.join(out, "measure.json")), load(os.path.join(out, "bench.json"))
    items = (measure or {}).get("items", {})
    summary = {"tests": test_counts(os.path.join(out, "tests.xml")),
               "environment": items.get("environment"),
               "errors_vs_float64": {k: {f: v.get(f) for f in ("max_abs_error", "bulk_error", "rel_norm_error",
                                                              "first_call_s", "wall_s", "kernel_device_s", "error",
                                                              "skipped")
                                         if f in v}
                                     for k, v in items.items() if k.startswith("parity")},
               "targets": targets(bench) if bench and bench.get("rows") else None,
               "measure": measure, "bench": bench}
    train = load(train_path) if train_path else None
    summary["train_bench"] = train
    summary["train_targets"] = train_targets(train) if train else None
    students, distilled = (load(p) if p else None for p in (students_path, distill_path))
    summary["bench_students"] = students  # the 1-step student's throughput (samples/s)
    summary["distill"] = distilled  # one distillation run on the GPU: its steps and wall time
    _write(os.path.join(out, "summary.json"), summary)
    if bench and bench.get("rows"):
        device_name = bench["environment"]["device_name"]
        _write(os.path.join(out, "auto_order.json"), {"orders": {device_name: auto_order_from(bench)}})
    print("\n== GPU check summary ==")
    t = summary["tests"]
    print("tests:", {k: v for k, v in t.items() if k != "failed_cases"}, *t.get("failed_cases", [])[:15], sep="\n  ")
    for key, value in summary["errors_vs_float64"].items():
        if "max_abs_error" in value:
            print(f"{key}: max abs {value['max_abs_error']:.2e}, 90% {value.get('bulk_error', float('nan')):.2e}, "
                  f"rel norm {value['rel_norm_error']:.2e}, "
                  f"first call {value['first_call_s']:.2f} s, wall {value['wall_s'] * 1e3:.2f} ms")
        else:
            print(f"{key}: {value.get('error') or 'skipped: ' + str(value.get('skipped'))}")
    if bench:
        from ddpm_fast.bench import format_table
        print(format_table(bench))
    if students and students.get("rows"):
        from ddpm_fast.bench import format_table
        print(format_table(students))
    if distilled:
        print("distill:", json.dumps(distilled.get("students"))[:400])
    if train:
        from ddpm_fast.bench_train import format_train_table
        print(format_train_table(train))
    for name, value in {**(summary["targets"] or {}), **(summary["train_targets"] or {})}.items():
        print(f"{name}: {'-' if value is None else f'{value:.2f}'}")
    return 0 if measure is not None else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
