"""Device functions shared by the kernels: the keyed Gaussian noise and the fused MLP."""
import triton
import triton.language as tl

# Stream ids keep the sampler's and q_sample's noise apart for the same seed.
STREAM_SAMPLER = tl.constexpr(0)
STREAM_Q_SAMPLE = tl.constexpr(1)


@triton.jit
def _gaussian_pair(seed, step, rows, stream: tl.constexpr):
    """Two N(0, 1) draws per row, from Philox4x32-10 keyed by ``seed`` with counter
    (row low 32 bits, step, stream, row high 32 bits) and a Box-Muller transform.

    The counter holds the global row index itself, so the numbers depend on neither
    block size, grid nor warps, and no offset overflows for any N.
    """
    rows = rows.to(tl.int64)
    zero = (rows * 0).to(tl.uint32)
    c0 = (rows & 0xFFFFFFFF).to(tl.uint32)
    c3 = (rows >> 32).to(tl.uint32)
    c1 = (rows * 0 + step).to(tl.uint32)
    r0, r1, _, _ = tl.philox(seed, c0, c1, zero + stream, c3)
    return tl.pair_uniform_to_normal(tl.uint_to_uniform_float(r0), tl.uint_to_uniform_float(r1))


@triton.jit
def _hidden_layer(h, w_ptr, emb, cols, H: tl.constexpr, DOT: tl.constexpr):
    """relu(h @ W^T + emb) for a [BLOCK_M, H] block; ``w_ptr`` points to W^T [H, H]."""
    w = tl.load(w_ptr + cols[:, None] * H + cols[None, :])  # [H, H], float32 or bfloat16
    if DOT == "bf16":
        acc = tl.dot(h.to(tl.bfloat16), w, out_dtype=tl.float32)
    else:
        acc = tl.dot(h, w, input_precision=DOT)  # "ieee" or "tf32"
    return tl.maximum(acc + emb, 0.0)


@triton.jit
def _mlp_eps(x0, x1, emb_row,  # x0, x1: [BLOCK_M] float32; emb_row: t * H, scalar or [BLOCK_M, 1]
             w1_ptr,  # [2, H] float32: W1^T
             emb_ptr,  # [3, T, H] float32: embedding tables with each Linear's bias folded in
             w2_ptr, w3_ptr,  # [H, H] each: W2^T, W3^T, float32 or bfloat16
             w4_ptr,  # [2, H] float32: W4
             b4_ptr,  # [2] float32
             T, H: tl.constexpr, DOT: tl.constexpr):
    """Predicted noise (eps0, eps1) of the SPEC's MLP for a block of points, all on chip."""
    cols = tl.arange(0, H)
    layer_stride = T * H
    # Layer 1 has K = 2, below tl.dot's minimum of 16: two broadcast multiply-adds.
    w1_0 = tl.load(w1_ptr + cols)
    w1_1 = tl.load(w1_ptr + H + cols)
    emb0 = tl.load(emb_ptr + emb_row + cols[None, :])
    h = x0[:, None] * w1_0[None, :] + x1[:, None] * w1_1[None, :] + emb0
    h = tl.maximum(h, 0.0)  # [BLOCK_M, H]
    h = _hidden_layer(h, w2_ptr, tl.load(emb_ptr + layer_stride + emb_row + cols[None, :]), cols, H, DOT)
    h = _hidden_layer(h, w3_ptr, tl.load(emb_ptr + 2 * layer_stride + emb_row + cols[None, :]), cols, H, DOT)
    # Layer 4 has N = 2, below tl.dot's minimum: two row-wise dot products.
    eps0 = tl.sum(h * tl.load(w4_ptr + cols)[None, :], axis=1) + tl.load(b4_ptr)
    eps1 = tl.sum(h * tl.load(w4_ptr + H + cols)[None, :], axis=1) + tl.load(b4_ptr + 1)
    return eps0, eps1


@triton.jit
def _step_noise(noise_ptr, i, N, rows, mask, seed, t, row_offset, NOISE_GIVEN: tl.constexpr):
    """The z of loop iteration i (timestep t): noise[i] when given, else drawn keyed by t."""
    if NOISE_GIVEN:
        base = noise_ptr + (tl.cast(i, tl.int64) * N + rows) * 2  # int64: T * N * 2 may pass 2^31
        z0 = tl.load(base, mask=mask, other=0.0)
        z1 = tl.load(base + 1, mask=mask, other=0.0)
    else:
        z0, z1 = _gaussian_pair(seed, t, rows + row_offset, STREAM_SAMPLER)
    return z0, z1


@triton.jit
def _reverse_update(x, eps, z, t, coeff_ptr, inv_sqrt_alphas_ptr, sigma_ptr):
    """x_{t-1} = inv_sqrt_alphas[t] * (x_t - coeff[t] * eps) + sigma[t] * z, in float32."""
    mean = tl.load(inv_sqrt_alphas_ptr + t) * (x - tl.load(coeff_ptr + t) * eps)
    return mean + tl.load(sigma_ptr + t) * z
