"""The training commands through main(argv): recipes, backends, bench-train, time-to-quality."""
import json
import re
from dataclasses import replace

import pytest
import torch

import ddpm_fast as D
from ddpm_fast.cli import main

TINY = ["--n-points", "300", "--snapshot-every", "0", "--quiet"]


@pytest.mark.filterwarnings("ignore:warmup_steps 200 is more than")  # 3 epochs of 300 points: 3 steps
def test_train_recipe_fast_with_overrides(tmp_path, capsys):
    assert main(["train", "--recipe", "fast", "--epochs", "3", *TINY, "--out", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["backend"] == "eager" and report["device"] == "cpu" and report["epochs_done"] == 3
    _, _, meta = D.load_checkpoint(tmp_path / "checkpoint.pt")
    config = meta["train_config"]
    fast = D.RECIPES["fast"]
    assert (config["batch_size"], config["lr_schedule"], config["ema_decay"]) == (fast.batch_size, "cosine", 0.998)
    assert config["epochs"] == 3 and config["n_points"] == 300  # the flags override the recipe


def test_train_compile_backend_and_resume(tmp_path, capsys):
    out = str(tmp_path)
    assert main(["train", "--backend", "compile", "--epochs", "2", *TINY, "--out", out]) == 0
    assert json.loads(capsys.readouterr().out)["compile_s"] >= 0
    assert main(["train", "--backend", "compile", "--resume", "--epochs", "3", "--out", out, "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["epochs_done"] == 3


@pytest.mark.parametrize("argv,message", [
    (["--backend", "cudagraph"], "cannot train with backend 'cudagraph': 'cudagraph' captures CUDA graphs"),
    (["--resume", "--recipe", "fast"], "leave out --recipe"),
    (["--ema-decay", "1.5"], r"argument --ema-decay: must be in \[0, 1\) \(0: no EMA\), got 1.5"),
])
def test_train_refuses_before_any_work(tmp_path, capsys, argv, message):
    if "--resume" in argv:
        assert main(["train", "--epochs", "1", *TINY, "--out", str(tmp_path)]) == 0
        capsys.readouterr()
    else:
        tmp_path = tmp_path / "new"
    try:
        code = main(["train", *argv, *TINY, "--out", str(tmp_path)])
    except SystemExit as exit_info:  # argparse's own errors
        code = exit_info.code
    assert code == 2
    assert re.search(message, capsys.readouterr().err)
    assert "--resume" in argv or not tmp_path.exists()


def test_bench_train_json_table_plot_and_skips(tmp_path, capsys):
    path, plot = tmp_path / "train.json", tmp_path / "train.png"
    assert main(["bench-train", "--backends", "eager,cudagraph", "--batch-sizes", "64,128", "--n-points", "500",
                 "--epochs", "2", "--warmup-epochs", "1", "--json", str(path), "--plot", str(plot), "--quiet"]) == 0
    result = json.loads(path.read_text())
    assert [(r["backend"], r["batch_size"]) for r in result["rows"]] == [("eager", 64), ("eager", 128)]
    row = result["rows"][0]
    assert row["steps_per_epoch"] == 8 and row["p20_s"] <= row["median_s"] <= row["p80_s"]
    assert row["steps_per_s"] == pytest.approx(8 / row["median_s"])
    assert row["seed_recipe_steps_s"] is None  # batch 64: the seed recipe's steps are of 128
    assert result["rows"][1]["seed_recipe_steps_s"] == pytest.approx(316_000 / result["rows"][1]["steps_per_s"])
    assert {s["backend"] for s in result["skipped"]} == {"cudagraph"} and plot.stat().st_size > 1000
    out = capsys.readouterr().out
    assert "steps/s" in out and "skipped cudagraph batch 64: 'cudagraph' captures CUDA graphs" in out


@pytest.mark.filterwarnings("ignore:warmup_steps 200 is more than")
def test_time_to_quality_writes_curves(tmp_path, capsys, monkeypatch):
    tiny = {"seed": replace(D.RECIPES["seed"], n_points=300, epochs=2, snapshot_every=0),
            "fast": replace(D.RECIPES["fast"], n_points=300, epochs=4, snapshot_every=0)}
    monkeypatch.setattr("ddpm_fast.cli.bench.RECIPES", {**D.RECIPES, **tiny})  # what time-to-quality reads
    assert main(["time-to-quality", "--n", "300", "--draws", "1", "--out", str(tmp_path), "--quiet"]) == 0
    report = json.loads((tmp_path / "time_to_quality.json").read_text())
    assert [r["epoch"] for r in report["curves"]["seed"]] == [1, 2]
    assert [r["epoch"] for r in report["curves"]["fast"]] == [1, 2, 4]
    times = [r["train_s"] for r in report["curves"]["fast"]]
    assert times == sorted(times) and all(r["swd"] > 0 for r in report["curves"]["fast"])
    assert (tmp_path / "time_to_quality.png").stat().st_size > 1000
    assert "fast  epoch     4" in capsys.readouterr().out


def test_bundled_best_model():
    seed, _ = D.load_pretrained()
    best, schedule = D.load_pretrained("best")
    assert not torch.equal(seed.linears[2].weight, best.linears[2].weight)
    with pytest.raises(ValueError, match="unknown bundled model 'good'; known: seed, best"):
        D.load_pretrained("good")
