"""What people read: picture titles, the bench table, --help, and word on long steps."""
import argparse

import pytest

import ddpm_fast.plotting as plotting
from ddpm_fast.bench import format_row, format_table
from ddpm_fast.cli import build_parser, main


@pytest.fixture
def figures(monkeypatch):
    """The figures the CLI draws, by file name, captured instead of saved."""
    drawn = {}

    def capture(fig, path):
        name = str(path).rsplit("/", 1)[-1]  # a staged temporary is ".samples.1a2b3c4d.tmp.png"
        drawn[name.lstrip(".").split(".")[0]] = fig
        open(path, "wb").close()
        return path
    monkeypatch.setattr(plotting, "save_figure", capture)
    return drawn


def _titles(fig):
    return [ax.get_title() for ax in fig.axes]


def test_picture_titles_say_what_they_show(tmp_path, figures):
    assert main(["sample", "--n", "30", "--backend", "eager", "--out", str(tmp_path), "--quiet"]) == 0
    assert _titles(figures["samples"]) == ["30 samples (eager, fp32)"]
    assert main(["plot", "--n", "30", "--out", str(tmp_path), "--quiet"]) == 0
    assert _titles(figures["dataset"]) == ["dataset: s_curve"]
    trajectory = figures["reverse_trajectory"]
    assert _titles(trajectory) == [f"$x_{{{t}}}$, t = {t}" for t in range(90, -1, -10)]
    assert "reverse process" in trajectory._suptitle.get_text()
    grid = figures["q_grid"]
    assert "forward process" in grid._suptitle.get_text()
    panels = [ax for ax in grid.axes if ax.get_title()]
    assert len(panels) == 20 and panels[1].get_title() == "$q(x_{6})$, t = 6"
    assert all(ax.get_aspect() == 1.0 for ax in panels)


def test_training_snapshot_titles(tmp_path, figures):
    assert main(["train", "--epochs", "1", "--n-points", "200", "--snapshot-every", "1", "--out", str(tmp_path),
                 "--quiet"]) == 0
    assert _titles(figures["trajectory_epoch0"])[0] == "$x_{90}$, t = 90"
    assert figures["trajectory_epoch0"]._suptitle.get_text() == "reverse process at epoch 0 (after 1 epoch)"
    assert _titles(figures["loss"]) == ["training loss, 1 epoch"]


def test_bench_columns_never_touch():
    row = {"backend": "triton-fused", "precision": "bf16", "n": 1_000_000, "median_s": 15.4572115,
           "p20_s": 15.2912, "p80_s": 15.61913, "first_call_s": 123.4, "point_steps_per_s": 6.47e6,
           "tflops": 0.431, "ceiling_fraction": 0.5, "speedup_vs_eager": 12.3}
    line = format_row(row)
    for cell in ("triton-fused", "bf16", "1,000,000", "15457.21", "15291.20-15619.13", "123.40", "6.47",
                 "0.431", "50.0%", "12.3x"):
        assert f" {cell} " in f" {line} ", (cell, line)
    table = format_table({"environment": {"device_name": "cpu", "torch": "x", "triton": None}, "n_steps": 100,
                          "matmul_ceiling_tflops": {}, "rows": [row], "skipped": [], "failed": []})
    header = table.splitlines()[1]
    assert header.index("median ms") + len("median ms") == line.index("15457.21") + len("15457.21")


def _subparsers():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


@pytest.mark.parametrize("command", sorted(_subparsers()))
def test_every_option_is_explained_with_its_default(command, capsys):
    parser = _subparsers()[command]
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{command} {action.option_strings[0]} has no help text"
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--device", "--seed", "--out", "--n", "--precision", "--repeats"):
        action = next((a for a in parser._actions if option in a.option_strings), None)
        if action is not None and action.default is not None and action.default is not False:
            assert f"(default: {action.default})" in text, (command, option)  # 0 too: --seed's
    if command == "train":
        assert "(default: seed 4000, fast 600, best 3000)" in text
        assert "(default: seed 0.001, fast 0.01, best 0.01)" in text


def test_long_steps_say_what_they_do(tmp_path, capsys):
    assert main(["demo", "--n", "200", "--device", "cpu", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    for words in ("warm-up call", "sampling 200 points, ddpm, 100 steps (the original sampler), with backend 'eager'",
                  "scoring",
                  "drawing the pictures"):
        assert words in err, words
    assert main(["evaluate", "--n", "100", "--draws", "2", "--device", "cpu"]) == 0
    assert "draw 2/2: scoring" in capsys.readouterr().err
    assert main(["evaluate", "--n", "100", "--draws", "1", "--quiet"]) == 0
    assert capsys.readouterr().err == ""
