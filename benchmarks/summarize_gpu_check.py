"""Fold the GPU check's outputs into summary.json and print the short table (last in the output)."""
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


def median(rows, backend, n, precision):
    row = next((r for r in rows if (r["backend"], r["n"], r["precision"]) == (backend, n, precision)), None)
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
    for r in rows:
        if r["backend"] == "triton-fused" and r["n"] == 1_000_000:
            out[f"triton-fused {r['precision']} N=1e6 fraction of matmul ceiling (goal 0.5)"] = r["ceiling_fraction"]
    return out


def main(out):
    bench, bench_1e7 = load(os.path.join(out, "bench.json")), load(os.path.join(out, "bench_1e7.json"))
    summary = {"tests": test_counts(os.path.join(out, "tests.xml")),
               "environment": bench["environment"] if bench else None,
               "targets": targets(bench) if bench else None,
               "bench": bench, "bench_1e7": bench_1e7}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print("\n== GPU check summary ==")
    t = summary["tests"]
    print("tests:", {k: v for k, v in t.items() if k != "failed_cases"}, *t.get("failed_cases", [])[:15], sep="\n  ")
    for path in ("bench.log",):
        if os.path.exists(os.path.join(out, path)):
            print(open(os.path.join(out, path)).read()[-6000:])
    for name, value in (summary["targets"] or {}).items():
        print(f"{name}: {'-' if value is None else f'{value:.2f}'}")


if __name__ == "__main__":
    main(sys.argv[1])
