"""Device functions shared by the kernels: the keyed Gaussian noise, the fused MLP and the
sampler plans' update."""
import triton
import triton.language as tl

from ..samplers import A_EPS, A_X, C_1, C_2, C_M, C_S, C_X, N_COLUMNS, P_1, P_2, P_M, P_S, P_Z

# The columns of a plan's coefficient table (ddpm_fast.samplers.COLUMNS), as kernel constants.
COL_A_X, COL_A_EPS = tl.constexpr(A_X), tl.constexpr(A_EPS)
COL_C_S, COL_C_X, COL_C_M, COL_C_1, COL_C_2 = (tl.constexpr(c) for c in (C_S, C_X, C_M, C_1, C_2))
COL_P_S, COL_P_M, COL_P_1, COL_P_2, COL_P_Z = (tl.constexpr(c) for c in (P_S, P_M, P_1, P_2, P_Z))
N_COLS = tl.constexpr(N_COLUMNS)

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
def _split_tf32(x):
    """x = hi + lo exactly, with hi rounded to TF32 (10 mantissa bits, the low 13 of float32 zero).

    Adding half a TF32 ulp to the bits and masking rounds to nearest; lo = x - hi is exact
    in float32 and at most 2^-11 |x|, so the tensor cores' TF32 reading of lo loses only
    about 2^-22 |x|.
    """
    bits = x.to(tl.uint32, bitcast=True)
    hi = ((bits + 0x1000) & 0xFFFFE000).to(tl.float32, bitcast=True)
    return hi, x - hi


@triton.jit
def _hidden_layer(h, w_ptr, b_ptr, e_ptr, emb_row, cols, H: tl.constexpr, DOT: tl.constexpr,
                  PER_ROW_T: tl.constexpr):
    """relu(h @ W^T + b + emb[t]) for a [BLOCK_M, H] block of activations.

    ``w_ptr`` is nn.Linear's own [H, H] float32 weight (row n = output n), read as W^T;
    ``e_ptr`` the step-embedding table [T, H], ``emb_row`` = t * H (scalar or [BLOCK_M, 1]).
    The weights are read from the model's parameters at every launch, so any change to
    them, in place or through ``.data``, is seen (also by a captured CUDA graph).
    """
    w_t_ptrs = w_ptr + cols[None, :] * H + cols[:, None]  # [H_in, H_out]: W^T
    # The accumulator starts at bias + embedding, so no [BLOCK_M, H] add follows the products;
    # per-row timesteps make the embedding a [BLOCK_M, H] gather, added after them instead so
    # that it is not live (registers) during the products.
    if PER_ROW_T:
        acc = tl.broadcast_to(tl.load(b_ptr + cols)[None, :], (h.shape[0], H))
    else:
        acc = tl.load(b_ptr + cols)[None, :] + tl.load(e_ptr + emb_row + cols[None, :])  # [1, H]
        acc = tl.broadcast_to(acc, (h.shape[0], H))
    if DOT == "bf16":
        acc = tl.dot(h.to(tl.bfloat16), tl.load(w_t_ptrs).to(tl.bfloat16), acc, out_dtype=tl.float32)
    elif DOT == "tf32":
        acc = tl.dot(h, tl.load(w_t_ptrs), acc, input_precision="tf32")
    else:  # "tf32x3": float32-level products on the tensor cores (3xTF32)
        h_hi, h_lo = _split_tf32(h)
        w_hi, _ = _split_tf32(tl.load(w_t_ptrs))
        # Three products accumulated in float32; lo * lo (about 2^-22 relative) is left out.
        acc = tl.dot(h_lo, w_hi, acc, input_precision="tf32")
        acc = tl.dot(h_hi, w_hi, acc, input_precision="tf32")
        # W is read again for its low part, so one [H, H] operand at a time is in shared memory
        _, w_lo = _split_tf32(tl.load(w_t_ptrs))
        acc = tl.dot(h_hi, w_lo, acc, input_precision="tf32")
    if PER_ROW_T:
        acc = acc + tl.load(e_ptr + emb_row + cols[None, :])
    return tl.maximum(acc, 0.0)


@triton.jit
def _mlp_eps(x0, x1, emb_row,  # x0, x1: [BLOCK_M] float32; emb_row: t * H, scalar or [BLOCK_M, 1]
             w_offset,  # 0, added to every weight's address (see _sampler_kernel)
             w1_ptr, b1_ptr, e1_ptr,  # linears[0]: weight [H, 2], bias [H]; step_embeddings[0] [T, H]
             w2_ptr, b2_ptr, e2_ptr,  # linears[2]: weight [H, H], bias [H]; step_embeddings[1] [T, H]
             w3_ptr, b3_ptr, e3_ptr,  # linears[4]: weight [H, H], bias [H]; step_embeddings[2] [T, H]
             w4_ptr, b4_ptr,  # linears[6]: weight [2, H], bias [2]
             H: tl.constexpr, DOT: tl.constexpr, PER_ROW_T: tl.constexpr = False):
    """Predicted noise (eps0, eps1) of the SPEC's MLP for a block of points, all on chip.

    Every pointer is a float32 parameter of the model itself (contiguous), nothing repacked.
    Every weight is read at ``w_offset`` (0) from its pointer; see _sampler_kernel for why.
    """
    cols = tl.arange(0, H)
    # Layer 1 has K = 2, below tl.dot's minimum of 16: two broadcast multiply-adds.
    w1_0 = tl.load(w1_ptr + w_offset + cols * 2)
    w1_1 = tl.load(w1_ptr + w_offset + cols * 2 + 1)
    h = x0[:, None] * w1_0[None, :] + x1[:, None] * w1_1[None, :] + tl.load(b1_ptr + w_offset + cols)[None, :]
    h = tl.maximum(h + tl.load(e1_ptr + emb_row + cols[None, :]), 0.0)  # [BLOCK_M, H]
    h = _hidden_layer(h, w2_ptr + w_offset, b2_ptr + w_offset, e2_ptr, emb_row, cols, H, DOT, PER_ROW_T)
    h = _hidden_layer(h, w3_ptr + w_offset, b3_ptr + w_offset, e3_ptr, emb_row, cols, H, DOT, PER_ROW_T)
    # Layer 4 has N = 2, below tl.dot's minimum: two row-wise dot products.
    eps0 = tl.sum(h * tl.load(w4_ptr + w_offset + cols)[None, :], axis=1) + tl.load(b4_ptr + w_offset)
    eps1 = tl.sum(h * tl.load(w4_ptr + w_offset + H + cols)[None, :], axis=1) + tl.load(b4_ptr + w_offset + 1)
    return eps0, eps1


@triton.jit
def _step_noise(noise_ptr, i, N, rows, mask, seed, t, row_offset, NOISE_GIVEN: tl.constexpr):
    """The z of step i (timestep t): noise[i] when given, else drawn keyed by t (a plan's
    timesteps are distinct, so no two steps share a z)."""
    if NOISE_GIVEN:
        base = noise_ptr + (tl.cast(i, tl.int64) * N + rows) * 2  # int64: T * N * 2 may pass 2^31
        z0 = tl.load(base, mask=mask, other=0.0)
        z1 = tl.load(base + 1, mask=mask, other=0.0)
    else:
        z0, z1 = _gaussian_pair(seed, t, rows + row_offset, STREAM_SAMPLER)
    return z0, z1


@triton.jit
def _step_coefficients(coef_ptr):  # the step's [N_COLUMNS] float32 row of the plan's table
    """The 12 coefficients of one step, loaded once for both coordinates (unused ones are dead code)."""
    return (tl.load(coef_ptr + COL_A_X), tl.load(coef_ptr + COL_A_EPS),
            tl.load(coef_ptr + COL_C_S), tl.load(coef_ptr + COL_C_X), tl.load(coef_ptr + COL_C_M),
            tl.load(coef_ptr + COL_C_1), tl.load(coef_ptr + COL_C_2),
            tl.load(coef_ptr + COL_P_S), tl.load(coef_ptr + COL_P_M), tl.load(coef_ptr + COL_P_1),
            tl.load(coef_ptr + COL_P_2), tl.load(coef_ptr + COL_P_Z))


@triton.jit
def _solver_update(x, eps, s, m_1, m_2, z,
                   a_x, a_eps, c_s, c_x, c_m, c_1, c_2, p_s, p_m, p_1, p_2, p_z,  # _step_coefficients
                   HISTORY: tl.constexpr, CORRECTOR: tl.constexpr, NOISY: tl.constexpr):
    """One coordinate of one step of a sampler plan (ddpm_fast.samplers), in float32.

    Returns (x_next, s, m): the next point, the corrected point and the step's estimate
    (eps or x_0), which become s' and m_1 of the next step. Registers a plan does not read
    (HISTORY, CORRECTOR) are dead code the compiler removes.
    """
    m = a_x * x + a_eps * eps
    if CORRECTOR:
        s = c_s * s + c_x * x + c_m * m + c_1 * m_1 + c_2 * m_2
    else:
        s = x
    x = p_s * s + p_m * m
    if HISTORY >= 1:
        x = x + p_1 * m_1
    if HISTORY >= 2:
        x = x + p_2 * m_2
    if NOISY:
        # a step without noise (p_z = 0) ignores its z, as the other backends, even a NaN one injected
        x = x + tl.where(p_z != 0.0, p_z * z, 0.0)
    return x, s, m


@triton.jit
def _solver_step(x0, x1, eps0, eps1, s0, s1, m1_0, m1_1, m2_0, m2_1, z0, z1,
                 coef_ptr,  # the step's [N_COLUMNS] float32 row of the plan's table
                 HISTORY: tl.constexpr, CORRECTOR: tl.constexpr, NOISY: tl.constexpr):
    """Both coordinates of one plan step, its coefficients loaded once:
    (x0, x1, s0, s1, m0, m1), the next point, the corrected point and the step's estimate."""
    a_x, a_eps, c_s, c_x, c_m, c_1, c_2, p_s, p_m, p_1, p_2, p_z = _step_coefficients(coef_ptr)
    x0, s0, m0 = _solver_update(x0, eps0, s0, m1_0, m2_0, z0, a_x, a_eps, c_s, c_x, c_m, c_1, c_2,
                                p_s, p_m, p_1, p_2, p_z, HISTORY, CORRECTOR, NOISY)
    x1, s1, m1 = _solver_update(x1, eps1, s1, m1_1, m2_1, z1, a_x, a_eps, c_s, c_x, c_m, c_1, c_2,
                                p_s, p_m, p_1, p_2, p_z, HISTORY, CORRECTOR, NOISY)
    return x0, x1, s0, s1, m0, m1
