"""The registry, dispatch, the drop-in call, and parity of every CPU-runnable backend with the reference."""
import warnings

import pytest
import torch
from helpers import SAMPLER_CASES, assert_close, precisions_for, reference_plan_f64, reference_trajectory_f64
from original_code import OriginalMLPDiffusion, original_schedule

import ddpm_fast as D
from ddpm_fast.backends import available_backends, backend_names

# eager, compile and cpu-fused run torch's CPU kernels: CI runs them again on another CPU's MKL path
BACKENDS = [pytest.param("eager", marks=pytest.mark.cpu_paths), pytest.param("compile", marks=pytest.mark.cpu_paths),
            pytest.param("cpu-fused", marks=pytest.mark.cpu_paths),
            "cudagraph", "triton-step", "triton-fused"]
NOISY_FEW_STEPS = dict(sampler="ddim", steps=5, eta=1.0)  # fresh noise at 4 of 5 steps: cheap in the interpreter


def runnable(backend, device):
    if backend == "cudagraph" and device.type != "cuda":
        pytest.skip("cudagraph needs CUDA")
    if backend == "cpu-fused" and device.type != "cpu":
        pytest.skip("cpu-fused runs on the CPU")


@pytest.fixture(scope="module")
def model(device):
    torch.manual_seed(0)
    return D.MLPDiffusion(100).to(device)


def test_registry_lists_and_reports(device):
    assert set(backend_names()) == {"auto", "eager", "compile", "cpu-fused", "cudagraph", "triton-step",
                                    "triton-fused"}
    report = available_backends("cpu")
    assert report["eager"]["available"] and report["eager"]["reason"] == "ok"
    assert not report["cudagraph"]["available"] and "CUDA" in report["cudagraph"]["reason"]
    # the tests run Triton in the interpreter on CPU, compiled on CUDA
    assert available_backends(device)["triton-fused"]["available"]


def test_auto_on_cpu_is_eager_without_warning():
    model = D.MLPDiffusion(100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = D.sample(model, 5, seed=1)
    b = D.sample(model, 5, seed=1, backend="eager")
    assert torch.equal(a, b)


# 1000 and 4097 rows: tests/kernels and tests/test_gpu.py. final_noise changes the last step only.
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n,final_noise", [(1, True), (7, False), (257, True)])
def test_injected_noise_parity(device, model, backend, n, final_noise):
    runnable(backend, device)
    sched = D.make_schedule().to(device)
    x_T, noise = torch.randn(n, 2, device=device), torch.randn(100, n, 2, device=device)
    expected = reference_trajectory_f64(model, sched, x_T, noise, final_noise)[-1]
    for precision in precisions_for(device) if backend != "eager" else ("fp32",):
        out = D.sample(model, n, schedule=sched, x_T=x_T, noise=noise, backend=backend, final_noise=final_noise,
                       precision=precision)
        assert out.shape == (n, 2) and out.device == device
        assert_close(out, expected, precision)


@pytest.mark.parametrize("backend", BACKENDS)
def test_drop_in_with_original_module_and_tables(device, backend):
    """A user's own original-code module and tables go straight into p_sample_loop."""
    runnable(backend, device)
    torch.manual_seed(4)
    original = OriginalMLPDiffusion(100).to(device)
    tables = {k: v.to(device) for k, v in original_schedule(100).items()}
    x_T, noise = torch.randn(7, 2, device=device), torch.randn(100, 7, 2, device=device)
    states = D.p_sample_loop(original, (7, 2), 100, tables["betas"], tables["one_minus_alphas_bar_sqrt"],
                             x_T=x_T, noise=noise, backend=backend)
    assert isinstance(states, list) and len(states) == 101
    expected = reference_trajectory_f64(original, D.make_schedule(), x_T, noise)
    assert_close(torch.stack(states), expected, "fp32")


@pytest.mark.cpu_paths
def test_compile_seeded_uses_the_eager_stream(model):
    a = D.sample(model, 33, seed=9, backend="compile")
    b = D.sample(model, 33, seed=9, backend="eager")
    assert_close(a, b, "fp32")


def test_compile_no_recompiles_no_graph_breaks(model):
    import torch._dynamo as dynamo

    from ddpm_fast.backends import compiled
    fresh = D.MLPDiffusion(100).to(model.linears[0].weight.device)  # its own compiled step
    with dynamo.config.patch(error_on_recompile=True):
        D.sample(fresh, 16, seed=0, backend="compile")  # 100 steps, one graph; fullgraph=True forbids breaks
        D.sample(fresh, 16, seed=1, backend="compile", final_noise=False)
    # (mode, precision, device, N, history, corrector, noisy): the default sampler's structure
    assert ("default", "fp32", str(fresh.linears[0].weight.device), 16, 0, False, True) in compiled.compile_times


def test_compile_modes(model, monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="unknown compile mode 'fast'; known modes: default, reduce-overhead"):
        D.sample(model, 4, seed=0, backend="compile", compile_mode="fast")
    modes = []  # the mode each compiled step was built with (compiling itself is not what is checked)
    monkeypatch.setattr(torch, "compile", lambda fn, **options: modes.append(options["mode"]) or fn)
    fresh = D.MLPDiffusion(100).to(model.linears[0].weight.device)
    D.sample(fresh, 4, seed=0, backend="compile", compile_mode="reduce-overhead")
    assert modes == ["reduce-overhead"]
    from ddpm_fast.cli import main  # the command line's flag reaches the job too, with no global switch
    assert main(["sample", "--backend", "compile", "--compile-mode", "max-autotune", "--n", "4", "--device", "cpu",
                 "--out", str(tmp_path), "--quiet"]) == 0
    assert modes == ["reduce-overhead", "max-autotune"]


def test_seeded_samples_are_reproducible(device, model):
    for backend in ("eager", "triton-fused"):
        a = D.sample(model, 9, seed=3, backend=backend, **NOISY_FEW_STEPS)
        b = D.sample(model, 9, seed=3, backend=backend, **NOISY_FEW_STEPS)
        c = D.sample(model, 9, seed=4, backend=backend, **NOISY_FEW_STEPS)
        assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.cpu_paths
def test_chunked_sampling_equals_unchunked_with_injected_noise(device, model):
    x_T, noise = torch.randn(10, 2, device=device), torch.randn(100, 10, 2, device=device)
    whole = D.sample(model, 10, x_T=x_T, noise=noise, backend="eager")
    chunked = D.sample(model, 10, x_T=x_T, noise=noise, backend="eager", chunk_size=3)
    assert_close(chunked, whole, "fp32")  # not bitwise: BLAS blocks a 3-row matmul differently


def test_chunked_triton_noise_is_keyed_by_global_row(device, model):
    """Chunks pass their row offset, so the in-kernel noise is the same as in one piece."""
    x_T = torch.randn(10, 2, device=device)
    whole = D.sample(model, 10, x_T=x_T, seed=5, backend="triton-fused", **NOISY_FEW_STEPS)
    chunked = D.sample(model, 10, x_T=x_T, seed=5, backend="triton-fused", chunk_size=4, **NOISY_FEW_STEPS)
    assert_close(chunked, whole, "fp32")


def test_generator_and_seed_are_exclusive(model):
    with pytest.raises(ValueError, match="either seed or generator"):
        D.sample(model, 3, seed=1, generator=torch.Generator(), backend="eager")


def test_chunk_seeds_differ_per_chunk():
    from ddpm_fast.backends.cudagraph import chunk_seed
    assert chunk_seed(5, 0) == 5  # an unchunked call keeps the caller's seed
    seeds = {chunk_seed(5, offset) for offset in range(0, 64 << 20, 1 << 20)}
    assert len(seeds) == 64 and all(0 <= s < 2**63 for s in seeds)
    assert chunk_seed(5, 1 << 20) != chunk_seed(6, 1 << 20)


def test_auto_order_on_cuda_measured_or_safe(monkeypatch):
    from ddpm_fast.backends import registry as backends
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Some GPU")
    monkeypatch.setattr(backends, "_measured_orders", lambda: {"Some GPU": {"bf16": ["triton-fused", "eager"]}})
    cuda = torch.device("cuda", 0)
    # measured on this card first, then the unmeasured order's other backends as fallbacks
    assert backends.auto_order(cuda, "bf16") == ("triton-fused", "eager", "cudagraph", "triton-step")
    assert backends.auto_order(cuda, "fp32") == backends.UNMEASURED_CUDA_ORDER  # not measured
    assert "compile" not in backends.UNMEASURED_CUDA_ORDER  # its first call costs tens of seconds
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Another GPU")
    assert backends.auto_order(cuda, "bf16") == backends.UNMEASURED_CUDA_ORDER


def test_auto_skips_a_backend_that_cannot_take_a_bare_generator(monkeypatch):
    from ddpm_fast.backends import registry as backends
    monkeypatch.setitem(backends.AUTO_ORDER, "cpu", ("cudagraph", "eager"))
    import dataclasses
    runnable_here = dataclasses.replace(backends.get_backend("cudagraph"), unavailable_reason=lambda device: None)
    monkeypatch.setitem(backends._REGISTRY, "cudagraph", runnable_here)
    with pytest.warns(RuntimeWarning, match="skipped cudagraph \\(takes a seed, not a generator\\)"):
        chosen = backends.resolve_backend("auto", torch.device("cpu"), "fp32", bare_generator=True)
    assert chosen.name == "eager"
    assert backends.resolve_backend("auto", torch.device("cpu"), "fp32").name == "cudagraph"


# --------------------------------------------------------------------------------------
# cpu-fused: bf16 on the CPU, and when auto takes it
# --------------------------------------------------------------------------------------

@pytest.mark.cpu_paths
@pytest.mark.parametrize("case", ["ddpm-100", *SAMPLER_CASES])
def test_cpu_fused_bf16_within_its_measured_tolerance(case):
    model, sched = D.load_pretrained()
    kwargs = SAMPLER_CASES.get(case, {})
    plan = D.make_plan(sched, **kwargs)
    generator = torch.Generator().manual_seed(11)
    x_T = torch.randn(1000, 2, generator=generator) * plan.prior_std
    noise = torch.randn(plan.steps, 1000, 2, generator=generator)
    expected = reference_plan_f64(model, sched, x_T, noise, **kwargs)[-1]
    out = D.sample(model, 1000, x_T=x_T, noise=noise, backend="cpu-fused", precision="bf16", **kwargs)
    assert out.dtype == torch.float32  # x and the update stay float32
    assert_close(out, expected, "bf16-cpu")
    fp32 = D.sample(model, 1000, x_T=x_T, noise=noise, backend="cpu-fused", precision="fp32", **kwargs)
    assert (out - fp32).abs().max() > 1e-4  # the MLP really ran in bfloat16


@pytest.mark.cpu_paths
def test_cpu_fused_rows_carry_their_keyed_noise_whatever_the_chunk_block_or_shard(monkeypatch):
    """Every step's z of a seeded request is the rows' keyed noise: as eager's keyed rows, in one
    call, in chunks (more than 16,384 rows on a CPU), in another block size, and as a shard."""
    model, _ = D.load_pretrained()
    from ddpm_fast.backends import cpu_fused
    n, noisy = 20_000, dict(sampler="ddim", steps=5, eta=1.0)  # fresh noise at 4 of 5 steps
    eager = D.sample(model, n, seed=4, backend="eager", keyed=True, chunk_size=None, **noisy)
    whole = D.sample(model, n, seed=4, backend="cpu-fused", chunk_size=None, **noisy)
    assert_close(whole, eager, "fp32")
    chunked = D.sample(model, n, seed=4, backend="cpu-fused", chunk_size=7000, **noisy)
    assert_close(chunked, whole, "fp32")
    part = D.sample(model, n, seed=4, backend="cpu-fused", rows=(15_000, 18_000), **noisy)
    assert_close(part, whole[15_000:18_000], "fp32")
    monkeypatch.setattr(cpu_fused, "BLOCK_ROWS", 1024)
    assert_close(D.sample(model, n, seed=4, backend="cpu-fused", **noisy), whole, "fp32")


def test_cpu_fused_draws_the_noise_it_is_not_given():
    model, schedule = D.load_pretrained()
    x_T = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    runs = [D.p_sample_loop(model, (50, 2), 100, schedule.betas, schedule.one_minus_alphas_bar_sqrt, x_T=x_T,
                            generator=torch.Generator().manual_seed(k), backend="cpu-fused")[-1] for k in (1, 2)]
    assert (runs[0] - runs[1]).abs().max() > 1e-2  # the generator's noise is used at every step


def test_auto_on_the_cpu_takes_cpu_fused_for_large_requests_only(monkeypatch):
    from ddpm_fast.backends import cpu_fused, resolve_backend
    cpu = torch.device("cpu")
    small, large = cpu_fused.AUTO_MIN_POINT_STEPS - 1, cpu_fused.AUTO_MIN_POINT_STEPS
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # passing over cpu-fused for a small request is a choice: no warning
        assert resolve_backend("auto", cpu, "fp32", point_steps=small).name == "eager"
    assert resolve_backend("auto", cpu, "fp32", point_steps=large).name == "cpu-fused"
    model, _ = D.load_pretrained()  # sample() itself: its rows tell the two apart (keyed noise or torch's)
    eager, fused = (D.sample(model, 10, seed=0, backend=name) for name in ("eager", "cpu-fused"))
    assert torch.equal(D.sample(model, 10, seed=0), eager) and not torch.equal(eager, fused)
    monkeypatch.setattr(cpu_fused, "AUTO_MIN_POINT_STEPS", 10 * 100)  # 10 rows x 100 steps is now large
    assert torch.equal(D.sample(model, 10, seed=0), fused)


def test_auto_takes_no_bf16_where_the_cpu_has_no_bf16_matrix_units(monkeypatch):
    from ddpm_fast.backends import cpu_fused, resolve_backend
    cpu = torch.device("cpu")
    monkeypatch.setattr(cpu_fused, "bf16_matmul_units", lambda: True)
    assert resolve_backend("auto", cpu, "bf16", point_steps=10).name == "cpu-fused"  # eager has no bf16
    monkeypatch.setattr(cpu_fused, "bf16_matmul_units", lambda: False)  # as under ONEDNN_MAX_CPU_ISA=AVX2
    with pytest.raises(RuntimeError, match="no bfloat16 matrix instructions"):
        resolve_backend("auto", cpu, "bf16", point_steps=1 << 30)
    assert resolve_backend("cpu-fused", cpu, "bf16").name == "cpu-fused"  # named, it runs (slower)
