"""The in-kernel Gaussian noise: an independent Philox4x32-10 in numpy, keys, statistics, 64-bit rows."""
import numpy as np
import torch
import triton
import triton.language as tl

from ddpm_fast.kernels._common import STREAM_SAMPLER, _gaussian_pair


@triton.jit
def _draw_kernel(rows_ptr, seed_ptr, out_ptr, step, n, BLOCK: tl.constexpr):
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = idx < n
    rows = tl.load(rows_ptr + idx, mask=mask, other=0)
    z0, z1 = _gaussian_pair(tl.load(seed_ptr), step, rows, STREAM_SAMPLER)
    tl.store(out_ptr + idx * 2, z0, mask=mask)
    tl.store(out_ptr + idx * 2 + 1, z1, mask=mask)


def draw(rows, seed, step, device):
    rows = torch.as_tensor(rows, dtype=torch.int64, device=device)
    out = torch.empty(rows.shape[0], 2, device=device)
    _draw_kernel[(triton.cdiv(rows.shape[0], 128),)](rows, torch.tensor([seed], device=device), out, step,
                                                     rows.shape[0], BLOCK=128)
    return out.cpu()


def numpy_philox_normal(rows, seed, step, stream=0):
    """Philox4x32-10 (Salmon et al., SC'11) and Box-Muller, written from the paper's constants."""
    m32 = np.uint64(0xFFFFFFFF)
    rows = np.asarray(rows, dtype=np.uint64)
    c = [rows & m32, np.full_like(rows, step), np.full_like(rows, stream), rows >> np.uint64(32)]
    k0, k1 = np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32)
    for _ in range(10):
        pb, pa = np.uint64(0xCD9E8D57) * c[2], np.uint64(0xD2511F53) * c[0]
        c = [(pb >> np.uint64(32)) ^ c[1] ^ k0, pb & m32, (pa >> np.uint64(32)) ^ c[3] ^ k1, pa & m32]
        k0, k1 = (k0 + np.uint64(0x9E3779B9)) & m32, (k1 + np.uint64(0xBB67AE85)) & m32

    def uniform(x):
        signed = x.astype(np.uint32).view(np.int32)
        signed = np.where(signed < 0, ~signed, signed)
        return signed.astype(np.float32) * np.float32(4.6566127342e-10)

    u1, u2 = np.maximum(np.float32(1e-7), uniform(c[0])), uniform(c[1])
    r = np.sqrt(np.float32(-2.0) * np.log(u1))
    theta = np.float32(6.283185307179586) * u2
    return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)


def test_matches_independent_philox(device):
    rows = [0, 1, 2, 1000, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**32 + 1, 5 * 2**32 + 7]
    for seed, step in [(0, 0), (12345, 99), (2**40 + 3, 17)]:
        np.testing.assert_allclose(draw(rows, seed, step, device).numpy(), numpy_philox_normal(rows, seed, step),
                                   rtol=1e-5, atol=1e-5)


def test_rows_past_32_bits_do_not_wrap(device):
    """Row r and row r + 2^32 draw different numbers: N may pass 2^32 / 2 rows without repeats."""
    low = draw([0, 1, 2, 3], 7, 5, device)
    high = draw([2**32, 2**32 + 1, 2**32 + 2, 2**32 + 3], 7, 5, device)
    assert not torch.isclose(low, high).any()


def test_no_repeats_across_steps_rows_coordinates(device):
    rows = torch.arange(512)
    draws = torch.stack([draw(rows, 3, step, device) for step in range(8)])  # [8, 512, 2]
    pairs = draws.reshape(-1, 2)
    assert torch.unique(pairs, dim=0).shape[0] == pairs.shape[0]  # no (row, step) repeats another's pair
    flat = draws.reshape(8, -1).double()
    corr = torch.corrcoef(flat)  # [8, 8]: step against step
    assert (corr - torch.eye(8, dtype=corr.dtype)).abs().max() < 5 / 1024 ** 0.5  # steps are uncorrelated
    assert torch.corrcoef(pairs.T.double())[0, 1].abs() < 5 / 4096 ** 0.5  # so are the coordinates


def test_standard_normal_statistics(device):
    z = draw(torch.arange(50_000), 1, 42, device).double()
    n = z.numel()
    assert abs(z.mean()) < 4 / n ** 0.5
    assert abs(z.var() - 1) < 4 * (2 / n) ** 0.5
    assert abs(torch.corrcoef(z.T)[0, 1]) < 4 / (n / 2) ** 0.5  # the two coordinates are uncorrelated
    frac_beyond_2 = (z.abs() > 2).double().mean()
    assert abs(frac_beyond_2 - 0.0455) < 0.005
