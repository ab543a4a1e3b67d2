"""Property-based: any mix of shapes, dtypes, devices, n, seeds and flags either gives finite
output of the right shape or raises ValueError/TypeError/RuntimeError with a message; never
another exception type, never a hang (each test has a timeout).

`compile` is left out: its first call on a CPU compiles for tens of seconds (`auto` in bf16 may run
`cpu-fused`, whose first call compiles in seconds).
"""
import io
import operator

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import ddpm_fast as D

ALLOWED = (ValueError, TypeError, RuntimeError)
FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
MODEL, SCHEDULE = D.load_pretrained()
MODELS = {"float32": MODEL, "float64": D.load_pretrained()[0].double(),
          "bfloat16": D.load_pretrained()[0].to(torch.bfloat16)}

dtypes = st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64])
counts = st.one_of(st.integers(-3, 40), st.sampled_from([np.int64(5), torch.tensor(3), 2.5, True, "7", None,
                                                         10 ** 13]))
devices = st.sampled_from([None, "cpu", "meta", "cuda", "cuda:7", "not-a-device"])
seeds = st.one_of(st.none(), st.integers(-5, 2 ** 64 + 5), st.sampled_from([1.5, "0", np.uint64(9)]))
backends = st.sampled_from(["auto", "eager", "eager", "eager", "triton-fused", "cudagraph", "nope"])
precisions = st.sampled_from(["fp32", "fp32", "tf32", "bf16", "fp8"])
chunks = st.sampled_from([None, 1, 3, 0, -3, 1 << 20, 2.0])


def _tensor(shape, dtype):
    return torch.randn(shape).to(dtype) if shape is not None else None


def _rows(n) -> int:
    """The rows a valid ``n`` asks for; 4 (any shape) for an invalid one."""
    if n is None or isinstance(n, (bool, float, str)):
        return 4
    try:
        count = operator.index(n)
    except TypeError:
        return 4
    return count if 0 <= count <= 40 else 4


def _outcome(call, shape, label=""):
    try:
        out = call()
    except ALLOWED as err:
        assert str(err).strip(), f"{type(err).__name__} without a message"
        event(f"{label} raised {type(err).__name__}")
        return None
    event(f"{label} returned")
    assert tuple(out.shape) == shape
    assert torch.isfinite(out.float()).all()
    return out


def _any_sample_call(data):
    """Every argument from a wide domain, valid or not."""
    n = data.draw(counts, "n")
    model = MODELS[data.draw(st.sampled_from(list(MODELS)), "model dtype")]
    rows = _rows(n)
    x_T_shape = data.draw(st.sampled_from([None, (rows, 2), (rows + 1, 2), (rows,)]), "x_T shape")
    noise_shape = data.draw(st.sampled_from([None, (100, rows, 2), (99, rows, 2)]), "noise shape")
    kwargs = dict(x_T=_tensor(x_T_shape, data.draw(dtypes, "x_T dtype")),
                  noise=_tensor(noise_shape, data.draw(dtypes, "noise dtype")),
                  seed=data.draw(seeds, "seed"), backend=data.draw(backends, "backend"),
                  precision=data.draw(precisions, "precision"), device=data.draw(devices, "device"),
                  final_noise=data.draw(st.booleans(), "final_noise"), chunk_size=data.draw(chunks, "chunk"),
                  schedule=data.draw(st.sampled_from([None, SCHEDULE, "cosine", "nope", 3]), "schedule"))
    return model, n, rows, kwargs


def _valid_sample_call(data):
    """Every argument valid: the call must return."""
    backend = data.draw(st.sampled_from(["eager", "eager", "auto", "triton-fused"]), "backend")
    n = data.draw(st.one_of(st.integers(0, 40), st.just(np.int64(7))), "n")
    rows, floats = int(n), st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64])
    model = MODELS[data.draw(st.sampled_from(["float32", "float64"] if backend == "eager" else ["float32"]), "model")]
    x_T_shape = data.draw(st.sampled_from([None, (rows, 2)]), "x_T shape")
    noise_shape = data.draw(st.sampled_from([None, (100, rows, 2)]), "noise shape")
    # Triton runs in its interpreter here, about 2 s a launch: one chunk
    chunk = data.draw(st.sampled_from([None, 1 << 20] if backend == "triton-fused" else [None, 1, 3, 1 << 20]))
    kwargs = dict(x_T=_tensor(x_T_shape, data.draw(floats, "x_T dtype")),
                  noise=_tensor(noise_shape, data.draw(floats, "noise dtype")),
                  seed=data.draw(st.one_of(st.none(), st.integers(0, 2 ** 63 - 1)), "seed"), backend=backend,
                  device=data.draw(st.sampled_from([None, "cpu"]), "device"), chunk_size=chunk,
                  final_noise=data.draw(st.booleans(), "final_noise"),
                  schedule=data.draw(st.sampled_from([None, SCHEDULE, "cosine"]), "schedule"))
    return model, n, rows, kwargs


@pytest.mark.timeout(600)
@FUZZ
@given(st.data())
def test_sample(data):
    valid = data.draw(st.booleans(), "all valid")
    model, n, rows, kwargs = (_valid_sample_call if valid else _any_sample_call)(data)
    out = _outcome(lambda: D.sample(model, n, **kwargs), (rows, 2),
                   f"{'valid' if valid else 'any'} {kwargs['backend']}")
    if valid:
        assert out is not None, "a valid call raised"


@pytest.mark.timeout(600)
@FUZZ
@given(st.data())
def test_p_sample_loop(data):
    shape = data.draw(st.sampled_from([(3, 2), (0, 2), (1, 2), (-3, 2), (4, 3), (5,), (2.0, 2), "ab"]), "shape")
    n_steps = data.draw(st.sampled_from([100, 99, 0, -1, 100.0]), "n_steps")
    table_dtype = data.draw(dtypes, "table dtype")
    betas = SCHEDULE.betas.to(table_dtype)
    tables = (betas, SCHEDULE.one_minus_alphas_bar_sqrt.to(table_dtype))
    model = MODELS[data.draw(st.sampled_from(list(MODELS)), "model dtype")]
    backend = data.draw(st.sampled_from(["eager", "eager", "triton-fused", "nope"]), "backend")

    def call():
        states = D.p_sample_loop(model, shape, n_steps, *tables, backend=backend,
                                 generator=torch.Generator().manual_seed(0))
        return torch.stack(states)
    _outcome(call, (101, *shape) if isinstance(shape, tuple) and len(shape) == 2 else None, backend)


@pytest.mark.timeout(300)
@FUZZ
@given(st.data())
def test_q_sample(data):
    rows = data.draw(st.sampled_from([0, 1, 7, 1000]), "rows")
    shape = data.draw(st.sampled_from([(rows, 2), (rows, 3), (rows,)]), "x_0 shape")
    x_0 = torch.randn(shape).to(data.draw(dtypes, "x_0 dtype"))
    t = data.draw(st.one_of(st.integers(-2, 101), st.sampled_from(
        [torch.randint(0, 100, (rows,)), torch.tensor([5]), torch.tensor([0.5]), torch.tensor([100] * max(rows, 1)),
         2.0, None, True])), "t")
    noise_shape = data.draw(st.sampled_from([None, shape, (rows + 1, 2)]), "noise shape")
    noise = None if noise_shape is None else torch.randn(noise_shape).to(data.draw(dtypes, "noise dtype"))
    _outcome(lambda: D.q_sample(x_0, t, SCHEDULE, noise=noise), shape)


def _good_checkpoint() -> bytes:
    buffer = io.BytesIO()
    payload = {"format": "ddpm-fast-checkpoint", "version": 1, "model_state": MODEL.state_dict(),
               "model_config": {"n_steps": 100, "num_units": 128}, "schedule_config": SCHEDULE.config()}
    torch.save(payload, buffer)
    return buffer.getvalue()


GOOD = _good_checkpoint()


@pytest.mark.timeout(300)
@FUZZ
@given(data=st.data())
def test_load_checkpoint(tmp_path, data):
    kind = data.draw(st.sampled_from(["truncated", "flipped", "random", "good"]), "kind")
    if kind == "truncated":
        content = GOOD[:data.draw(st.integers(0, len(GOOD) - 1), "cut")]
    elif kind == "flipped":
        at = data.draw(st.integers(0, len(GOOD) - 1), "byte")
        content = GOOD[:at] + bytes([GOOD[at] ^ data.draw(st.integers(1, 255), "xor")]) + GOOD[at + 1:]
    elif kind == "random":
        content = data.draw(st.binary(max_size=300), "bytes")
    else:
        content = GOOD
    path = tmp_path / "fuzzed.pt"
    path.write_bytes(content)
    device = data.draw(st.sampled_from(["cpu", "cuda", "meta", "not-a-device"]), "map_location")
    try:
        model, schedule, metadata = D.load_checkpoint(path, map_location=device)
    except ALLOWED as err:
        assert str(err).strip()
        event(f"{kind} raised {type(err).__name__}")
        return
    event(f"{kind} loaded")
    assert all(torch.isfinite(p).all() for p in model.parameters() if p.device.type != "meta")
    assert schedule.n_steps == model.config.n_steps and isinstance(metadata, dict)
