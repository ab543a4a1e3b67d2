"""(precision, atol, rtol) for comparing a fast path with the reference, each with its reason.

Errors are of float32 paths against a float64 reference run on the same injected noise;
points are O(1) (x_T ~ N(0, I) shrinking to the data's 0.2 extent).
"""
TOLERANCES = {
    # IEEE float32 dots: the eager float32 reference itself lands from float64, after 100 steps of
    # 1000 points of the bundled model, 2.7e-6 (median) and up to 4.3e-5 (max) over 60 draws;
    # a few points near a fold of the trained flow amplify one rounding (test_reference,
    # test_reference_float32_tail_error): 2.3x headroom over that maximum.
    "fp32": (1e-4, 1e-5),
    # TF32 keeps 10 mantissa bits (~5e-4 relative per product), and 100 steps compound it.
    "tf32": (2e-2, 1e-2),
    # bf16 dot operands keep 8 bits (~4e-3 relative); x and the update stay float32.
    "bf16": (6e-2, 3e-2),
}
# One step or one MLP call: no compounding over the 100 steps. fp32: a K=128 float32 dot
# of O(1) terms rounds at ~1e-7 relative; tf32 and bf16 as above, one product deep.
TOLERANCES_ONE_STEP = {"fp32": (2e-6, 1e-5), "tf32": (5e-3, 5e-3), "bf16": (3e-2, 2e-2)}

# (atol, rtol) on the weights after 200 training steps (tests/test_train_backends.py), against
# eager on the same draws. rtol is per tensor, relative to that tensor's largest weight.
TRAIN_TOLERANCES = {
    # Inductor reorders float32 sums (~1e-7 relative) and Adam carries them; measured on this CPU
    # over 200 steps (constant and cosine/EMA runs): max 7.7e-7 absolute, 3.3e-7 relative: 13x and
    # 30x headroom. Two seeds differ by > 1e-3 (test_parity_check_can_fail).
    "compile": (1e-5, 1e-5),
    # The padded, graphed step vs the eager unpadded one on CUDA: the same float32 operations in
    # another reduction order, as for compile. An ESTIMATE until the GPU check measures it
    # (tests/test_gpu.py prints the measured difference).
    "cudagraph": (1e-5, 1e-5),
    # 2 DDP ranks (each its 64 rows' weighted loss, gradients averaged by all-reduce) vs 1 rank's
    # batch mean of 128 rows on the same draws: the same sums in another order. Measured on this
    # CPU after 16 steps: 1.6e-7 (eager) and 2.4e-7 (compile); the compile tolerance's reasoning.
    "ddp": (1e-5, 1e-5),
}
