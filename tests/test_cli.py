"""The CLI through main(argv), on tiny settings."""
import json

import numpy as np
import pytest
import torch

import ddpm_fast as D
from ddpm_fast.cli import main

COMMANDS = ["demo", "train", "distill", "sample", "plot", "evaluate", "tune-steps", "bench", "bench-train",
            "time-to-quality", "profile"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: ddpm-fast " + command in capsys.readouterr().out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    assert main(["train", "--epochs", "2", "--n-points", "300", "--snapshot-every", "1", "--seed", "1",
                 "--out", str(out), "--quiet"]) == 0
    return out / "checkpoint.pt"


def test_train_writes_a_loadable_checkpoint(checkpoint):
    model, sched, meta = D.load_checkpoint(checkpoint)
    assert meta["epochs_done"] == 2 and len(meta["losses"]) == 2 and sched.n_steps == 100
    for name in ("loss.png", "snapshots.pt", "trajectory_epoch1.png"):
        assert (checkpoint.parent / name).exists()


def test_sample(checkpoint, tmp_path, capsys):
    assert main(["sample", "--checkpoint", str(checkpoint), "--n", "50", "--backend", "eager",
                 "--out", str(tmp_path)]) == 0
    points = np.load(tmp_path / "samples.npy")
    assert points.shape == (50, 2) and np.isfinite(points).all()
    assert np.loadtxt(tmp_path / "samples.csv", delimiter=",", skiprows=1).shape == (50, 2)
    assert (tmp_path / "samples.png").exists()
    assert json.loads(capsys.readouterr().out)["backend"] == "eager"


def test_plot(checkpoint, tmp_path):
    assert main(["plot", "--checkpoint", str(checkpoint), "--n", "200", "--out", str(tmp_path)]) == 0
    for name in ("dataset.png", "q_grid.png", "reverse_trajectory.png", "reverse.gif", "loss.png"):
        assert (tmp_path / name).stat().st_size > 1000, name


def test_evaluate(capsys):
    assert main(["evaluate", "--n", "500", "--draws", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["draws"] == 2 and len(report["each"]) == 2
    assert 0 < report["median"]["swd_floor"] < report["median"]["swd"] + 1  # both measured, finite


def test_demo(tmp_path, capsys):
    assert main(["demo", "--n", "2000", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "with backend 'eager'" in out and "SWD" in out
    for name in ("dataset.png", "q_grid.png", "samples.png", "reverse_trajectory.png", "reverse.gif"):
        assert (tmp_path / name).exists(), name


def test_bench_json_and_skips(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert main(["bench", "--n", "64", "--backends", "eager,triton-fused,cudagraph", "--repeats", "3",
                 "--sampler", "dpm++2m", "--steps", "5",  # few steps: the interpreter is slow
                 "--warmup", "0", "--json", str(path), "--plot", str(tmp_path / "bench.png")]) == 0
    result = json.loads(path.read_text())
    measured = {r["backend"] for r in result["rows"]}
    assert measured == {"eager", "triton-fused"}
    assert result["skipped"][0]["backend"] == "cudagraph" and "CUDA" in result["skipped"][0]["reason"]
    row = result["rows"][0]
    assert row["p20_s"] <= row["median_s"] <= row["p80_s"] and row["tflops"] > 0
    assert result["environment"]["torch"] == torch.__version__
    assert (tmp_path / "bench.png").exists()
    assert "median ms" in capsys.readouterr().out


def test_profile(tmp_path, capsys):
    assert main(["profile", "--backend", "eager", "--n", "64", "--out", str(tmp_path)]) == 0
    trace = json.loads((tmp_path / "trace_eager.json").read_text())
    assert trace["traceEvents"]
    assert "aten::" in capsys.readouterr().out


def test_errors_name_the_problem(tmp_path, capsys):
    assert main(["sample", "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert "missing.pt' does not exist" in capsys.readouterr().err
    assert main(["sample", "--n", "5", "--backend", "cudagraph", "--out", str(tmp_path)]) == 2
    assert "CUDA graphs need a CUDA device" in capsys.readouterr().err
