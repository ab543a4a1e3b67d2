"""cpu-fused's rate against its row block size, beside eager, at one N."""
import json
import statistics
import sys
import time

import ddpm_fast as D
from ddpm_fast.backends import cpu_fused

FLOP = 66_560


def timed(fn, repeats):
    fn()  # the first call (compiling) apart
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), max(times)


def main(n=65536, steps=100, sampler="ddpm"):
    model, schedule = D.load_pretrained()
    flop = n * steps * FLOP
    med, lo, hi = timed(lambda: D.sample(model, n, seed=0, backend="eager", sampler=sampler, steps=steps,
                                         chunk_size=None), 2)
    print(json.dumps({"backend": "eager", "n": n, "gflops": round(flop / med / 1e9, 1), "median_s": round(med, 3),
                      "spread_s": [round(lo, 3), round(hi, 3)]}), flush=True)
    for block in (1024, 2048, 4096, 8192, 16384):
        cpu_fused.BLOCK_ROWS = block
        for precision in ("fp32", "bf16"):
            def call(precision=precision):
                return D.sample(model, n, seed=0, backend="cpu-fused", precision=precision, sampler=sampler,
                                steps=steps)
            med, lo, hi = timed(call, 3)
            print(json.dumps({"backend": "cpu-fused", "block": block, "precision": precision, "n": n,
                              "gflops": round(flop / med / 1e9, 1), "median_s": round(med, 3),
                              "spread_s": [round(lo, 3), round(hi, 3)]}), flush=True)


if __name__ == "__main__":
    sys.exit(main(*[int(a) for a in sys.argv[1:2]]))
