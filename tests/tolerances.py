"""(precision, atol, rtol) for comparing a fast path with its reference: the rule, each bound's
reason, and the worst figure measured under it.

The rule (tests/helpers.py, assert_close). A run of K steps, a float32 path against the float64
reference on the same injected noise, is judged per point, by its largest error over its
coordinates and every state past rtol * |reference|:
- the bulk: the BULK_QUANTILE quantile over the points is within TOLERANCES' atol (from
  BULK_MIN_POINTS points on: a quantile of a few points is their largest);
- every point: within TAIL_ATOL.
A max-abs over a 100-step run of the trained model is set by one chaotic point in thousands:
near a fold of the learned flow one float32 rounding is amplified, by an amount that depends
on which BLAS kernel the CPU runs. The bulk is well conditioned, so its bound can be tight,
and the tail bound still catches a wrong row or a wrong block. One model call or one step from
the same state compounds nothing: every element within TOLERANCES_ONE_STEP.
test_reference.py holds the float32 reference within half of both bounds and shows the rule
failing on a wrong coefficient or noise index.

"Measured" figures come from `python3 tests/measure_tolerances.py --draws 10` under MKL_CBWR
unset (measured on a 2-core AMD EPYC with AVX-512, 2 threads), COMPATIBLE, SSE4_2 and AVX2, and with
OMP_NUM_THREADS=MKL_NUM_THREADS=1: 10 draws of 1000 points for each of the two bundled models
and a fresh untrained one, and each sampler case (tests/helpers.py SAMPLER_CASES and the
100-step ddpm), torch 2.13.0 on the CPU; the training figures from the tests' own recorded
properties (`pytest --junitxml`) under the same five settings. Points are O(1): x_T ~ N(0, I)
shrinks to the data's 0.2 extent.
"""
BULK_QUANTILE = 0.9
BULK_MIN_POINTS = 100

TOLERANCES = {
    # The bulk of the points, IEEE float32 against float64 (rtol 1e-6 leaves the bound to atol
    # at the O(1) points). Measured, every setting: the eager reference's 90% quantile of one
    # draw's points at most 5.5e-7 (100-step ddpm, untrained model, COMPATIBLE): 3.6x headroom;
    # compile and the Triton backends (interpreter) at most 1.3e-7 at the end points.
    "fp32": (2e-6, 1e-6),
    # GPU only, ESTIMATES until the GPU check measures them (bulk and every point alike):
    # TF32 keeps 10 mantissa bits (~5e-4 relative per product), and 100 steps compound it.
    "tf32": (2e-2, 1e-2),
    # bf16 dot operands keep 8 bits (~4e-3 relative); x and the update stay float32.
    "bf16": (6e-2, 3e-2),
    # cpu-fused's bf16 (the MLP on bfloat16 weights, x and the update float32), measured on the CPU
    # over 1000 points, 3 draws of each sampler case and 100-step ddpm, seed and untrained models
    # (the same under ONEDNN_MAX_CPU_ISA=AVX2): bulk at most 1.6e-3, so 5e-3 (3.1x).
    "bf16-cpu": (5e-3, 3e-2),
}
TAIL_ATOL = {
    # Every point. Measured, every setting: the eager reference's worst point 2.1e-5 of 150,000
    # (100-step ddpm, seed model): 9.4x headroom. On an Intel AVX-512 machine the seed model's
    # worst point over 60 draws of 1000 points was 4.3e-5 (unset), and one of those draws
    # reached 7.8e-5 under MKL_CBWR=COMPATIBLE: 2.6x.
    "fp32": 2e-4,
    "tf32": 2e-2,
    "bf16": 6e-2,
    # cpu-fused's bf16 (measured as for its bulk above): every point within 2.4e-2 (the 4-step
    # ddpm of the seed model): 2.5x headroom.
    "bf16-cpu": 6e-2,
}
# One step or one MLP call from the same state. fp32: a K=128 float32 dot of O(1) terms rounds
# at ~1e-7 relative. Measured (fresh models, 1 to 4097 rows, t = 0, 1, 50, 99), as a fraction
# of atol + rtol * |expected|: torch's forward 0.077 (0.073 under COMPATIBLE), the fused kernel
# in the interpreter 0.089, one reference step 0.018: 11x headroom. tf32 and bf16 (GPU only,
# estimates) as above, one product deep.
TOLERANCES_ONE_STEP = {"fp32": (2e-6, 1e-5), "tf32": (5e-3, 5e-3), "bf16": (3e-2, 2e-2)}

# (atol, rtol) on the weights after 200 training steps (tests/test_train_backends.py), against
# eager on the same draws. rtol is per tensor, relative to that tensor's largest weight.
TRAIN_TOLERANCES = {
    # Inductor reorders float32 sums (~1e-7 relative) and Adam carries them. Measured over 200
    # steps (constant and cosine/EMA runs), every setting: max 1.7e-6 absolute (seed recipe,
    # AVX-512 path) and 4.5e-7 relative: 6x and 22x headroom. Two seeds differ by > 1e-3
    # (test_parity_check_can_fail).
    "compile": (1e-5, 1e-5),
    # The padded, graphed step vs the eager unpadded one on CUDA: the same float32 operations in
    # another reduction order, as for compile. An ESTIMATE until the GPU check measures it
    # (tests/test_gpu.py prints the measured difference).
    "cudagraph": (1e-5, 1e-5),
    # 2 DDP ranks (each its 64 rows' weighted loss, gradients averaged by all-reduce) vs 1 rank's
    # batch mean of 128 rows on the same draws: the same sums in another order. Measured after
    # 16 steps (eager), every setting: at most 2.8e-7 (COMPATIBLE): 36x headroom; the compile
    # tolerance's reasoning.
    "ddp": (1e-5, 1e-5),
}
