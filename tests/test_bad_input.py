"""Each bad input of issue 8 gets one line naming the problem and exit 2 from the CLI, and a
ValueError/TypeError/RuntimeError with the same words from the API; never a wrong answer."""
import json
import os

import numpy as np
import pytest
import torch
from helpers import assert_close, reference_trajectory_f64

import ddpm_fast as D
from ddpm_fast.cli import main


def _fails(argv, capsys, message, tmp_path=None):
    """The command exits 2 with exactly one stderr line holding ``message``; no traceback."""
    try:
        code = main(argv)
    except SystemExit as exit_info:  # argparse's own errors: usage, then one error line
        code = exit_info.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and "Traceback" not in err
    lines = err.splitlines()
    assert len([line for line in lines if "error:" in line]) == 1, err
    # besides the error, only the command's own status lines: no usage block, no warnings
    assert all(line.startswith(f"ddpm-fast {argv[0]}: ") for line in lines), err
    if tmp_path is not None:
        assert not [p for p in tmp_path.iterdir() if p.is_file()], "files were left behind"
    return err


@pytest.mark.parametrize("command", ["plot", "sample", "demo", "evaluate", "profile"])
def test_n_zero_is_refused_up_front(command, tmp_path, capsys):
    out = [] if command == "evaluate" else ["--out", str(tmp_path)]
    _fails([command, "--n", "0", *out], capsys, "must be at least", tmp_path)


def test_n_too_large_is_refused_before_sampling(tmp_path, capsys):
    _fails(["sample", "--n", "1000000000000", "--out", str(tmp_path)], capsys, "needs about 42.0 TB on disk")
    model, schedule = D.MLPDiffusion(100), D.make_schedule()
    with pytest.raises(ValueError, match=r"the result of sample\(n=1000000000000\) .* needs 8.0 TB on cpu"):
        D.sample(model, 10 ** 12)
    with pytest.raises(ValueError, match="needs .* on cpu, which has"):
        D.p_sample_loop(model, (10 ** 10, 2), 100, schedule.betas, schedule.one_minus_alphas_bar_sqrt)


def test_bench_bad_arguments(tmp_path, capsys):
    _fails(["bench", "--backends", "bogus"], capsys, "unknown backends 'bogus'; known backends: compile")
    _fails(["bench", "--precisions", "fp8"], capsys, "unknown precisions 'fp8'; known precisions: fp32")
    _fails(["bench", "--repeats", "0"], capsys, "must be at least 1")
    _fails(["bench", "--n", "0"], capsys, "must be at least 1")


def test_bench_bf16_on_cpu_skips_quickly(capsys):
    assert main(["bench", "--n", "8", "--precisions", "bf16", "--backends", "eager", "--repeats", "1",
                 "--quiet"]) == 0
    assert "skipped eager bf16 ddpm N=8: supports precisions fp32" in capsys.readouterr().out


def test_evaluate_draws_zero(capsys):
    _fails(["evaluate", "--draws", "0"], capsys, "must be at least 1")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_missing_is_named(tmp_path, capsys):
    err = _fails(["sample", "--device", "cuda", "--out", str(tmp_path)], capsys, "needs CUDA, which is not available")
    assert "checkpoint" not in err
    with pytest.raises(RuntimeError, match="device 'cuda' needs CUDA, which is not available"):
        D.sample(D.MLPDiffusion(100), 4, device="cuda")
    with pytest.raises(RuntimeError, match="needs CUDA, which is not available"):
        D.load_pretrained("cuda")


def _save(path, payload):
    torch.save(payload, path)
    return str(path)


def test_damaged_checkpoints_name_the_file_and_the_fault(tmp_path, capsys):
    good = {"format": "ddpm-fast-checkpoint", "version": 1,
            "model_state": D.MLPDiffusion(100).state_dict(), "model_config": {"n_steps": 100, "num_units": 128},
            "schedule_config": D.make_schedule().config()}
    cases = {
        "no_state.pt": ({k: v for k, v in good.items() if k != "model_state"}, "has no 'model_state'"),
        "bad_config.pt": ({**good, "model_config": {"n_steps": 100, "num_units": 0}}, "model_config"),
        "bad_schedule.pt": ({**good, "schedule_config": {"kind": "quadratic"}}, "schedule_config"),
    }
    for name, (payload, message) in cases.items():
        path = _save(tmp_path / name, payload)
        with pytest.raises(ValueError, match=message):
            D.load_checkpoint(path)
        _fails(["sample", "--checkpoint", path, "--n", "5", "--out", str(tmp_path / "o")], capsys, name)
    (tmp_path / "text.pt").write_text("hello, not a checkpoint\n")
    (tmp_path / "empty.pt").write_bytes(b"")
    for name, message in (("text.pt", "not a file written by torch.save (it starts with b'hello, n')"),
                          ("empty.pt", "the file is empty (0 bytes)")):
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            D.load_checkpoint(tmp_path / name)
        err = _fails(["evaluate", "--checkpoint", str(tmp_path / name)], capsys, message)
        assert err.strip().endswith(")")  # not ': 101' or ': '


def test_non_finite_weights_are_refused(tmp_path, capsys):
    model = D.MLPDiffusion(100)
    with torch.no_grad():
        model.linears[2].weight[0, 0] = float("nan")
        model.step_embeddings[1].weight[5, 3] = float("inf")
    D.save_checkpoint(tmp_path / "nan.pt", model, D.make_schedule())
    with pytest.raises(ValueError, match="NaN or infinite weights in linears.2.weight, step_embeddings.1.weight"):
        D.load_checkpoint(tmp_path / "nan.pt")
    _fails(["evaluate", "--checkpoint", str(tmp_path / "nan.pt")], capsys, "NaN or infinite weights")


def test_samples_that_overflow_are_never_written(tmp_path, capsys):
    model = D.MLPDiffusion(100)
    with torch.no_grad():
        model.linears[6].weight.fill_(1e37)  # finite weights, infinite predictions
    D.save_checkpoint(tmp_path / "huge.pt", model, D.make_schedule())
    out = tmp_path / "out"
    _fails(["sample", "--checkpoint", str(tmp_path / "huge.pt"), "--n", "5", "--backend", "eager",
            "--out", str(out)], capsys, "5 of 5 points are NaN or infinite; nothing written")
    assert not out.exists()  # every check, the NaN one too, comes before the folder is made


def test_os_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "dir.pt").mkdir()
    _fails(["sample", "--checkpoint", str(tmp_path / "dir.pt")], capsys, "is a directory, not a file")
    (tmp_path / "f2").write_text("")
    _fails(["bench", "--n", "8", "--plot", str(tmp_path / "f2" / "x.png")], capsys, "f2: is a file, not a directory")


def test_api_accepts_any_integral_n_and_converts_injected_dtypes():
    model, schedule = D.load_pretrained()
    assert D.sample(model, np.int64(7), seed=0).shape == (7, 2)
    assert D.sample(model, torch.tensor(3), seed=0).shape == (3, 2)
    x_T, noise = torch.randn(5, 2, dtype=torch.float64), torch.randn(100, 5, 2, dtype=torch.float64)
    ref = D.sample(model, 5, x_T=x_T.float(), noise=noise.float(), backend="eager")
    assert torch.equal(D.sample(model, 5, x_T=x_T, noise=noise, backend="eager"), ref)
    assert D.sample(model, 5, schedule="sigmoid", seed=1).shape == (5, 2)
    reference = reference_trajectory_f64(model, schedule, x_T, noise)[-1]
    double = D.sample(model.double(), 5, x_T=x_T, noise=noise, backend="eager")  # the float64 reference
    assert double.dtype == torch.float64 and torch.equal(double, reference)  # tables in float64 too
    model.float()
    assert_close(ref, double)  # the float32 reference against float64 (tests/tolerances.py)


def test_api_bad_values_name_the_problem():
    model, schedule = D.MLPDiffusion(100), D.make_schedule()
    checks = [
        (lambda: D.sample(model, 4.0), TypeError, "n must be an integer, got 4.0"),
        (lambda: D.sample(model, 4, chunk_size=-3), ValueError, "chunk_size must be an integer >= 1, got -3"),
        (lambda: D.sample(model, 4, seed=2 ** 64), ValueError, "seed must be below 2\\*\\*63"),
        (lambda: D.sample(model, 4, seed=-1), ValueError, "seed must be an integer >= 0"),
        (lambda: D.sample(model, 4, schedule=5), TypeError, "schedule must be a Schedule"),
        (lambda: D.sample(model, 4, schedule="sigmoidal"), ValueError, "unknown schedule kind 'sigmoidal'"),
        (lambda: D.sample("model", 4), TypeError, "model must be a torch.nn.Module"),
        (lambda: D.sample(model.to(torch.bfloat16), 4), TypeError, "parameters are torch.bfloat16; backend 'eager' "
                                                                   "needs a float32 model"),
        (lambda: D.p_sample_loop(model.float(), (-3, 2), 100, schedule.betas, schedule.one_minus_alphas_bar_sqrt),
         ValueError, r"N \(shape\[0\]\) must be an integer >= 0, got -3"),
        (lambda: D.p_sample_loop(model, (3, 2), 100, [0.1] * 100, schedule.one_minus_alphas_bar_sqrt),
         TypeError, "betas must be a floating-point tensor"),
        (lambda: D.TrainConfig(num_units=0), ValueError, "num_units must be an integer >= 1, got 0"),
        (lambda: D.TrainConfig(lr=float("nan")), ValueError, "lr must be a positive finite number"),
        (lambda: D.MLPDiffusion(100, 0), ValueError, "num_units must be an integer >= 1, got 0"),
        (lambda: D.MLPDiffusion(100.0), TypeError, "n_steps must be an integer, got 100.0"),
        (lambda: D.make_schedule(2.5), TypeError, "n_steps must be an integer, got 2.5"),
        (lambda: D.make_dataset(n=-1), ValueError, "n must be an integer >= 0, got -1"),
    ]
    for call, kind, message in checks:
        with pytest.raises(kind, match=message):
            call()
    model.float()
    with pytest.raises(TypeError, match="backend 'triton-fused' needs a float32 model"):
        D.sample(model.double(), 4, seed=0, backend="triton-fused")


def test_evaluate_reports_the_biased_mmd_beside_the_unbiased(capsys):
    assert main(["evaluate", "--n", "300", "--draws", "1", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    median = report["median"]
    assert median["mmd_biased"] >= 0 and median["mmd_biased_floor"] >= 0
    assert median["mmd_biased"] > median["mmd"] and "can be slightly negative" in report["note"]


@pytest.mark.parametrize("argv, message", [
    (["sample", "--n", "1e400"], "argument --num-samples/--n: not an integer: '1e400'"),
    (["sample", "--n", "2.5e0"], "argument --num-samples/--n: not an integer: '2.5e0'"),
    (["sample", "--n", "ten"], "argument --num-samples/--n: not an integer: 'ten'"),
    (["sample", "--seed", "-1"], "argument --seed: must be at least 0, got -1"),
    (["bench", "--warmup", "-1"], "argument --warmup: must be at least 0, got -1"),
    (["sample", "--device", "meta"], "'meta': the commands run on cpu, cuda or cuda:N"),
    (["bench", "--device", "cpu:1"], "'cpu:1': the commands run on cpu, cuda or cuda:N"),
    (["sample", "--device", "gpu"], "not a device: 'gpu'"),
    (["train", "--seed", "5e9"], "seed must be below 2**32"),
    (["train", "--n-points", "1e15"], "needs"),
    (["train", "--num-units", "1e15", "--epochs", "1"], "use a smaller --n-points, --num-units or --n-steps"),
    (["bench", "--n", "1e15", "--backends", "eager"], "N = 1000000000000000 ([N, 2] float32) needs 8.0 PB"),
    (["sample", "--out", ""], "the output directory is an empty string"),
    (["bench", "--json", ""], "the output file is an empty string"),
    (["bench", "--plot", "noext", "--backends", "eager"], "--plot 'noext': no picture format"),
    (["bench", "--plot", "x.jpgx", "--backends", "eager"], "unknown picture format 'jpgx'; end the name with one of"),
])
def test_cli_values_refused_in_one_line(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _fails([*argv, *(["--out", str(tmp_path / "o")] if argv[0] == "train" else [])], capsys, message)
    assert not (tmp_path / "o").exists() or argv[0] != "train"


def test_cli_zero_spellings_are_zero(tmp_path):
    for zero in ("00", "-0", "0e0"):
        assert main(["sample", "--n", "3", "--seed", zero, "--backend", "eager", "--out", str(tmp_path),
                     "--quiet"]) == 0


def test_checkpoint_faults_found_by_a_new_user(tmp_path, capsys):
    import pickle
    with open(tmp_path / "pickled.pt", "wb") as f:
        pickle.dump({"a": 1}, f, protocol=4)  # torch warns about the protocol before refusing
    _fails(["evaluate", "--checkpoint", str(tmp_path / "pickled.pt")], capsys, "pickled.pt")
    state = D.MLPDiffusion(100).state_dict()
    empty_steps = {**state, "step_embeddings.0.weight": torch.zeros(0, 128)}
    with pytest.raises(ValueError, match="empty.pt': its model_config .* n_steps must be an integer >= 1, got 0"):
        D.load_checkpoint(_save(tmp_path / "empty.pt", empty_steps))
    wrong = {**state, "linears.2.weight": torch.zeros(3, 3)}
    with pytest.raises(ValueError, match="size mismatch for linears.2.weight"):
        D.load_checkpoint(_save(tmp_path / "wrong.pt", wrong))
    good = {"format": "ddpm-fast-checkpoint", "version": 1, "model_state": state,
            "model_config": {"n_steps": 100, "num_units": 128}, "schedule_config": D.make_schedule(50).config()}
    with pytest.raises(ValueError, match="its schedule has 50 steps but its model's step embeddings hold 100"):
        D.load_checkpoint(_save(tmp_path / "steps.pt", good))
    good["schedule_config"] = D.make_schedule().config()
    with pytest.raises(ValueError, match="'metadata' is a list, not a dict"):
        D.load_checkpoint(_save(tmp_path / "meta.pt", {**good, "metadata": [1]}))
    model, _, _ = D.load_checkpoint(os.fsencode(_save(tmp_path / "bytes.pt", good)), map_location=None)
    assert model.linears[0].weight.device.type == "cpu"


def test_api_faults_found_by_a_new_user():
    model, schedule = D.MLPDiffusion(100), D.make_schedule()
    x = torch.randn(8, 2)
    checks = [
        (lambda: D.q_sample(x, 3, None), TypeError, "schedule must be a Schedule"),
        (lambda: D.q_sample(x, 3, "sigmoid"), TypeError, "schedule must be a Schedule"),
        (lambda: D.q_sample(x, 3, schedule, noise=np.zeros((8, 2))), TypeError, "noise must be a torch.Tensor"),
        (lambda: D.p_sample_loop(None, (4, 2), 100, schedule.betas, schedule.one_minus_alphas_bar_sqrt),
         TypeError, "model must be a torch.nn.Module"),
        (lambda: D.p_sample_loop(model, (4, 2), 100, schedule.betas, schedule.one_minus_alphas_bar_sqrt,
                                 precision="x"), ValueError, "unknown precision 'x'"),
        (lambda: D.sample(model, 4, generator="x"), TypeError, "generator must be a torch.Generator or None"),
        (lambda: D.sample(model, 4, final_noise="no"), TypeError, "final_noise must be True or False"),
        (lambda: D.train(None), TypeError, "config must be a TrainConfig"),
        (lambda: D.train({"epochs": 1}), TypeError, "config must be a TrainConfig"),
        (lambda: D.train(D.TrainConfig(epochs=1, n_points=10), progress=False, resume=(model, {})),
         ValueError, "the training state to resume has no config"),
        (lambda: D.train(D.TrainConfig(epochs=1), dataset=torch.empty(0, 2), progress=False), ValueError,
         "the dataset is empty"),
        (lambda: D.sample(model, 4, device=[]), ValueError, "not a device"),
        (lambda: D.MLPDiffusion(100, 10 ** 6), ValueError, "would hold over 2\\*\\*31 parameters"),
    ]
    for call, kind, message in checks:
        with pytest.raises(kind, match=message) as info:
            call()
        assert "\n" not in str(info.value)
    # NumPy numbers are numbers everywhere
    assert D.q_sample(x, np.int64(3), schedule).shape == (8, 2)
    assert D.make_schedule(np.int64(10)).n_steps == 10 and D.make_dataset(n=np.int64(5)).shape == (5, 2)
    config = D.TrainConfig(n_points=np.int64(100), epochs=np.int64(1), lr=np.float32(1e-3), snapshot_every=0)
    assert type(config.n_points) is int and type(config.lr) is float
    assert D.train(config, progress=False).epochs_done == 1
    float64_data = D.make_dataset(n=100, seed=0).double()
    assert D.train(config, dataset=float64_data, progress=False).epochs_done == 1
