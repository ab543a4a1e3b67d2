"""The few-step samplers from the command line: sample, evaluate --sweep, tune-steps, bench."""
import json

import numpy as np
import pytest

import ddpm_fast as D
from ddpm_fast.cli import main
from ddpm_fast.tuning import _neighbours


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_sample_with_a_few_step_sampler(tmp_path, capsys):
    assert main(["sample", "--n", "50", "--sampler", "dpm++2m", "--steps", "5", "--out", str(tmp_path),
                 "--quiet"]) == 0
    report = _json(capsys)
    assert (report["sampler"], report["steps"], report["grid"]) == ("dpm++2m", 5, "tuned")
    assert report["timesteps"] == D.load_pretrained()[0].tuned_grids["dpm++2m"]["5"]
    assert np.isfinite(np.load(tmp_path / "samples.npy")).all()
    assert main(["sample", "--n", "20", "--sampler", "ddim", "--steps", "3", "--grid", "90,40,0", "--eta", "1",
                 "--out", str(tmp_path), "--quiet"]) == 0
    assert _json(capsys)["timesteps"] == [90, 40, 0]


def test_plot_with_a_few_step_sampler(tmp_path, capsys):
    assert main(["plot", "--n", "200", "--sampler", "unipc", "--steps", "5", "--out", str(tmp_path), "--quiet"]) == 0
    assert (tmp_path / "reverse_trajectory.png").stat().st_size > 0


def test_state_labels_follow_the_original_pictures():
    """The state before the step at schedule index t is x_{t+1}; the last is x_0."""
    sched = D.make_schedule()
    assert D.make_plan(sched).state_labels() == list(range(100, -1, -1))  # x_100 (x_T) ... x_0
    assert D.make_plan(sched, "unipc", grid=[64, 46, 28, 8, 1]).state_labels() == [65, 47, 29, 9, 2, 0]


def test_evaluate_sweep_table_json_and_plot(tmp_path, capsys):
    assert main(["evaluate", "--sweep", "--n", "300", "--draws", "1", "--sweep-samplers", "ddpm,dpm++2m",
                 "--sweep-steps", "2,5", "--json", str(tmp_path / "s.json"), "--plot", str(tmp_path / "s.png"),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| SWD x 1e-3 (wall s) | 2 steps | 5 steps |" in out and "| dpm++2m | " in out
    rows = json.loads((tmp_path / "s.json").read_text())["rows"]
    assert [(r["sampler"], r["steps"]) for r in rows] == [("ddpm", 2), ("ddpm", 5), ("dpm++2m", 2), ("dpm++2m", 5)]
    assert all(r["swd"] > 0 and r["seconds"] > 0 for r in rows)
    assert (tmp_path / "s.png").stat().st_size > 0


def test_tune_steps_writes_a_loadable_grid(tmp_path, capsys):
    out = tmp_path / "tuned.pt"
    assert main(["tune-steps", "--sampler", "dpm++2m", "--steps", "3", "--n", "400", "--max-evaluations", "9",
                 "--out", str(out), "--quiet"]) == 0
    report = _json(capsys)
    assert report["evaluations"] <= 9 and report["objective_swd"] <= report["start_swd"]
    model, _, metadata = D.load_checkpoint(out)
    assert model.tuned_grids["dpm++2m"]["3"] == report["timesteps"]
    assert metadata["tuned_grids_details"]["dpm++2m"]["3"]["evaluations"] == report["evaluations"]
    assert model.tuned_grids["unipc"]["5"] == D.load_pretrained()[0].tuned_grids["unipc"]["5"]  # kept
    assert main(["sample", "--checkpoint", str(out), "--n", "10", "--sampler", "dpm++2m", "--steps", "3",
                 "--out", str(tmp_path / "s"), "--quiet"]) == 0
    assert _json(capsys)["grid"] == "tuned"


def test_tuning_moves_keep_a_grid_valid():
    grids = list(_neighbours((99, 50, 1), 100))
    assert grids and all(all(a > b for a, b in zip(g, g[1:])) and 0 <= g[-1] and g[0] < 100 for g in grids)
    assert (98, 50, 1) in grids and (99, 50, 0) in grids and (99, 66, 1) in grids


def test_bench_two_samplers_side_by_side(tmp_path, capsys):
    assert main(["bench", "--n", "16", "--backends", "eager", "--sampler", "ddpm,dpm++2m", "--steps", "100,10",
                 "--repeats", "1", "--warmup", "0", "--json", str(tmp_path / "b.json"), "--quiet"]) == 0
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert [(r["sampler"], r["steps"]) for r in rows] == [("ddpm", 100), ("dpm++2m", 10)]
    assert all(r["samples_per_s"] * 1 == pytest.approx(r["point_steps_per_s"] / r["steps"]) for r in rows)


@pytest.mark.parametrize("argv,match", [
    (["sample", "--sampler", "euler"], "invalid choice: 'euler'"),
    (["sample", "--sampler", "ddim", "--grid", "9,x"], "--grid '9,x': a grid name or comma-separated integer"),
    (["sample", "--sampler", "dpm++2m", "--eta", "0.5"], "eta is ddim's noise level"),
    (["bench", "--sampler", "ddpm,ddim", "--steps", "10"], "--steps has 1 values for 2 samplers"),
    (["evaluate", "--sweep", "--sweep-steps", "5,0"], "must be at least 1"),
    (["evaluate", "--sweep", "--sweep-samplers", "ddpm,plms"], "unknown samplers 'plms'"),
    (["tune-steps", "--steps", "200"], "steps=200 is more than the schedule's 100 timesteps"),
    (["sample", "--sampler", "ddim", "--grid", "99,,0"], "--grid '99,,0': a grid name or comma-separated integer"),
    (["evaluate", "--sweep", "--sampler", "unipc"], "--sampler apply without --sweep"),
    (["evaluate", "--json", "x.json"], "--json, --plot and --sweep-students belong to --sweep"),
    (["evaluate", "--sweep-students", "distill-1"], "--json, --plot and --sweep-students belong to --sweep"),
    (["evaluate", "--sweep", "--sweep-students", "best"], "--sweep-students best: not a distilled student"),
    (["evaluate", "--sweep", "--sweep-students", "distill-2,distill-2"], "two students with 2 steps; the sweep has"),
    (["bench", "--sampler", "student"], "--sampler student is a distilled student's own plan: this checkpoint is not"),
    (["bench", "--sampler", "ddim", "--steps", "200"], "steps=200 is more than the schedule's 100 timesteps"),
    (["profile", "--sampler", "dpm++2m", "--grid", "karras", "--steps", "90"], "repeats timesteps (0, 1, 2"),
])
def test_bad_sampler_flags_fail_in_one_line(tmp_path, capsys, argv, match):
    from test_bad_input import _fails
    if argv[0] == "sample":
        argv = argv + ["--out", str(tmp_path), "--quiet"]
    if argv[0] == "tune-steps":
        argv = argv + ["--out", str(tmp_path / "c.pt"), "--quiet"]
    _fails(argv, capsys, match)
