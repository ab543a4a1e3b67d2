"""Distilled students: their own plan in exactly K model calls, resumable step for step, and refusals."""
import json

import pytest
import torch

import ddpm_fast as D
from ddpm_fast.checkpoint import save_checkpoint
from ddpm_fast.cli import main

SHORT = {"iterations": 4, "batch_size": 32}  # a few steps: what is tested here is the machinery, not quality


@pytest.fixture(scope="module")
def teacher():
    return D.load_pretrained("best")[0]


@pytest.fixture(scope="module")
def student(teacher):
    return D.distill(teacher, 2, progress=False, **SHORT).student


def _calls(model):
    """A counter of the model's forward calls."""
    count = [0]
    model.register_forward_hook(lambda *_: count.__setitem__(0, count[0] + 1))
    return count


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_student_samples_in_exactly_its_steps(teacher, steps):
    student = D.distill(teacher, steps, progress=False, **SHORT).student
    calls = _calls(student)
    points = D.sample(student, 7, backend="eager", seed=0)
    assert points.shape == (7, 2) and calls[0] == steps
    plan = D.make_plan(D.make_schedule(), student_plan=student.student_plan)
    assert (plan.name, plan.steps, plan.grid, plan.timesteps[0]) == ("ddim", steps, "student", 99)
    assert plan.describe().startswith(f"ddim, {steps} steps, grid student")


def test_other_samplers_run_on_a_student_as_on_any_model(student):
    calls = _calls(student)
    D.sample(student, 5, sampler="dpm++2m", steps=5, backend="eager", seed=0)
    assert calls[0] == 5


def test_a_teacher_is_left_as_it_was(teacher):
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    D.distill(teacher, 1, progress=False, **SHORT)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert teacher.student_plan is None and teacher.training is False


def test_sampler_options_without_a_sampler_are_refused_on_a_student(student):
    with pytest.raises(ValueError, match=r"distilled student with its own plan .*pass a sampler too \(sampler="):
        D.sample(student, 5, steps=4)


def _stopped_at(teacher, stop_after, tmp_path, **config):
    """A run stopped after ``stop_after`` steps, saved and read back as a resumable file."""
    polls = iter(range(1, 10 ** 6))
    result = D.distill(teacher, progress=False, should_stop=lambda: next(polls) >= stop_after, **config)
    assert result.interrupted and result.iteration == stop_after
    path = tmp_path / f"stopped{stop_after}.pt"
    save_checkpoint(path, result.student, result.schedule, result.metadata(), train_state=result.train_state())
    return D.read_distill_state(path)


@pytest.mark.parametrize("config,stops", [
    ({"steps": 2, "method": "trajectory", **SHORT}, [1, 3]),
    # 2 rounds of 4 steps (8 -> 4 -> 2): stops inside each round and on the boundary between them
    ({"steps": 2, "method": "progressive", "start_steps": 8, **SHORT}, [2, 4, 6]),
])
def test_a_resumed_run_equals_an_uninterrupted_one(teacher, tmp_path, config, stops):
    whole = D.distill(teacher, progress=False, **config)
    for stop in stops:
        resumed = D.distill(teacher, progress=False, resume=_stopped_at(teacher, stop, tmp_path, **config), **config)
        assert resumed.iteration == whole.iteration and not resumed.interrupted
        assert torch.equal(resumed.losses, whole.losses)
        assert all(torch.equal(a, b) for a, b in zip(resumed.student.state_dict().values(),
                                                     whole.student.state_dict().values()))


def test_a_resume_fault_is_detectable(teacher, tmp_path):
    """The equality above can fail: a resumed run that redraws step 1's noise from another seed differs."""
    config = {"steps": 2, **SHORT}
    whole = D.distill(teacher, progress=False, **config)
    student, state = _stopped_at(teacher, 1, tmp_path, **config)
    resumed = D.distill(teacher, progress=False, resume=(student, {**state, "iteration": 0}), **config)
    assert not torch.equal(resumed.losses, whole.losses)


def test_student_checkpoint_round_trip(student, tmp_path):
    path = tmp_path / "student.pt"
    save_checkpoint(path, student, D.make_schedule(), {"student_plan": student.student_plan})
    loaded, _, meta = D.load_checkpoint(path)
    assert loaded.student_plan == student.student_plan == meta["student_plan"]
    assert torch.equal(D.sample(loaded, 9, seed=1), D.sample(student, 9, seed=1))
    save_checkpoint(path, student, D.make_schedule(), {"student_plan": {**student.student_plan, "timesteps": [5, 9]}})
    with pytest.raises(ValueError, match="'student_plan' is damaged: grid timesteps must be strictly decreasing"):
        D.load_checkpoint(path)


@pytest.mark.parametrize("options,message", [
    ({"method": "consistency"}, "unknown method 'consistency'; known methods: trajectory, progressive"),
    ({"steps": 13}, "a 13-step student cannot copy a 12-step teacher's trajectory"),
    ({"steps": 2, "timesteps": (99, 50)}, r"must be strictly decreasing, start at 99 and lie on the teacher's"),
    ({"steps": 2, "timesteps": (52, 29)}, r"start at 99"),
    ({"steps": 3, "method": "progressive", "start_steps": 9}, r"start_steps 9 must be steps \(3\) x 2\^r"),
    ({"steps": 2, "timesteps": (99, 29), "method": "progressive"}, "timesteps is not a setting of method"),
    ({"start_steps": 64}, "start_steps is not a setting of method 'trajectory'"),
    ({"teacher_sampler": "ddpm"}, "must be deterministic and start from the matched prior"),
    ({"teacher_sampler": "ddim", "method": "progressive"}, "teacher_sampler is not a setting of method 'progressive'"),
    ({"backend": "cudagraph"}, "distill runs on backend eager or compile, not 'cudagraph'"),
])
def test_bad_settings_are_refused(teacher, options, message):
    with pytest.raises(ValueError, match=message):
        D.distill(teacher, **{"progress": False, **SHORT, **options})


def test_a_student_is_not_a_teacher(student, tmp_path):
    path = tmp_path / "student.pt"
    save_checkpoint(path, student, D.make_schedule(), {"student_plan": student.student_plan})
    for teacher in (str(path), student):
        with pytest.raises(ValueError, match="is a distilled student: distill from the model it was distilled"):
            D.distill(teacher, 1, progress=False, **SHORT)


def test_progressive_draws_the_teachers_own_training_data(tmp_path):
    trained = D.train(D.TrainConfig(dataset="moons", epochs=1, n_points=300, snapshot_every=0), progress=False)
    path = tmp_path / "moons.pt"
    save_checkpoint(path, trained.model, trained.schedule, trained.metadata())
    result = D.distill(str(path), 2, "progressive", start_steps=4, progress=False, **SHORT)
    assert result.method_details["dataset"] == "moons"


def test_resuming_with_other_settings_or_another_teacher_is_refused(teacher, tmp_path):
    config = {"steps": 2, **SHORT}
    resume = _stopped_at(teacher, 1, tmp_path, **config)
    with pytest.raises(ValueError, match=r"distilled with other settings \(lr: 0.001 then, 0.5 now\)"):
        D.distill(teacher, progress=False, resume=resume, **{**config, "lr": 0.5})
    with pytest.raises(ValueError, match="distilled from another teacher"):
        D.distill(D.load_pretrained("seed")[0], progress=False, resume=resume, **config)
    with pytest.raises(ValueError, match="drew its numbers on cpu with backend eager: resume it there"):
        D.distill(teacher, progress=False, resume=resume, backend="compile", **config)
    student, state = resume
    with pytest.raises(ValueError, match="the state to resume is damaged: 9 steps done of 4"):
        D.distill(teacher, progress=False, resume=(student, {**state, "iteration": 9}), **config)


CLI = ["distill", "--iterations", "4", "--batch-size", "32", "--quiet"]


class _StopAfter:
    """StopOnSignal as if Ctrl-C came after ``n`` polls."""

    def __init__(self, n):
        self.n, self.signum, self.saving = n, None, False

    def __call__(self, *args):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    @property
    def requested(self):
        self.n -= 1
        return self.n < 0


def test_cli_interrupted_and_resumed_equals_uninterrupted(tmp_path, capsys, monkeypatch):
    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
    assert main([*CLI, "--steps", "2,1", "--out", whole]) == 0
    capsys.readouterr()
    monkeypatch.setattr("ddpm_fast.cli.distill.StopOnSignal", _StopAfter(3))  # 1 poll before, 1 a step
    assert main([*CLI, "--steps", "2,1", "--out", parts]) == 128 + 15  # stopped: SIGTERM's exit code
    report = json.loads(capsys.readouterr().out)
    assert report["students"][0]["iterations_done"] == 3 and report["resume_with"].endswith("--resume")
    assert main([*CLI, "--steps", "2,1", "--out", parts]) == 2  # an unfinished student is not replaced
    assert "holds a student: pass --resume to continue an unfinished one" in capsys.readouterr().err
    monkeypatch.undo()
    assert main([*CLI, "--steps", "2,1", "--out", parts, "--resume"]) == 0
    for k in (2, 1):
        a, _, meta = D.load_checkpoint(f"{whole}/distill-{k}.pt")
        b, _, _ = D.load_checkpoint(f"{parts}/distill-{k}.pt")
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
        assert meta["distill"]["teacher"]["source"] == "best" and meta["student_plan"]["sampler"] == "ddim"


def test_cli_resume_keeps_finished_students_that_match(tmp_path, capsys):
    out = str(tmp_path)
    assert main([*CLI, "--steps", "1", "--out", out]) == 0
    capsys.readouterr()
    assert main([*CLI, "--steps", "1", "--out", out, "--resume"]) == 0
    assert [row.get("kept") for row in json.loads(capsys.readouterr().out)["students"]] == ["finished before"]
    assert main([*CLI, "--steps", "1", "--out", out, "--resume", "--lr", "0.5"]) == 2  # not what the file holds
    assert "is a student of 'best' with other settings (lr: 0.001 then, 0.5 now): pass --overwrite" \
        in capsys.readouterr().err
    save_checkpoint(tmp_path / "distill-1.pt", *D.load_pretrained("best"))
    assert main([*CLI, "--steps", "1", "--out", out, "--resume"]) == 2
    assert "distill-1.pt: not a distilled student; pass --overwrite to replace it" in capsys.readouterr().err


def test_cli_distills_a_checkpoint_of_its_own_training(tmp_path, capsys):
    """Any checkpoint, not only the bundled ones: a model trained here for one epoch."""
    result = D.train(D.TrainConfig(epochs=1, n_points=300, snapshot_every=0), progress=False)
    teacher = tmp_path / "teacher.pt"
    save_checkpoint(teacher, result.model, result.schedule)
    assert main([*CLI, "--checkpoint", str(teacher), "--steps", "1", "--out", str(tmp_path / "out")]) == 0
    student, _, meta = D.load_checkpoint(tmp_path / "out" / "distill-1.pt")
    assert student.student_plan["timesteps"] == [99] and meta["distill"]["teacher"]["source"] == str(teacher)
    assert D.sample(student, 11, seed=0).shape == (11, 2)


def test_the_sampling_commands_run_a_students_own_plan(tmp_path, capsys):
    assert main(["sample", "--checkpoint", "distill-2", "--n", "100", "--out", str(tmp_path / "s"), "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["sampler"], report["grid"], report["timesteps"]) == ("ddim", "student", [99, 13])
    assert main(["demo", "--checkpoint", "distill-2", "--n", "500", "--out", str(tmp_path / "d"), "--quiet"]) == 0
    assert "sampled 500 points x 2 steps" in capsys.readouterr().out
    path = tmp_path / "bench.json"
    assert main(["bench", "--checkpoint", "distill-1", "--n", "64", "--backends", "eager", "--repeats", "2",
                 "--warmup", "0", "--json", str(path), "--quiet"]) == 0
    rows = json.loads(path.read_text())["rows"]
    assert [(r["sampler"], r["steps"]) for r in rows] == [("student", 1)]
    assert rows[0]["samples_per_s"] == rows[0]["point_steps_per_s"]  # one model call a point


def test_cli_stop_between_students_starts_no_other(tmp_path, capsys, monkeypatch):
    """A stop asked during the first student's last step is honoured before the second starts."""
    out = tmp_path / "out"
    # polls: before student 1, after its steps 1-3 (none after the last), before student 2: the 5th stops
    monkeypatch.setattr("ddpm_fast.cli.distill.StopOnSignal", _StopAfter(4))
    assert main([*CLI, "--steps", "2,1", "--out", str(out)]) == 128 + 15
    report = json.loads(capsys.readouterr().out)
    assert [row["steps"] for row in report["students"]] == [2] and report["students"][0]["iterations_done"] == 4
    assert (out / "distill-2.pt").exists() and not (out / "distill-1.pt").exists()


def test_cli_resume_refuses_what_it_cannot_continue(tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*CLI, "--steps", "2", "--out", str(tmp_path / "nothing"), "--resume"]) == 2  # a typo in --out
    assert "holds none of distill-2.pt to continue (start without --resume)" in capsys.readouterr().err
    assert main([*CLI, "--steps", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    (out / "distill-2.pt").rename(out / "distill-1.pt")  # a 2-step student under the 1-step name
    assert main([*CLI, "--steps", "1", "--out", str(out), "--resume"]) == 2
    assert "holds a 2-step student, not a 1-step one" in capsys.readouterr().err
    save_checkpoint(out / "distill-1.pt", *D.load_pretrained("best"), train_state={"config": {}})
    assert main([*CLI, "--steps", "1", "--out", str(out), "--resume"]) == 2  # a training run's file
    assert "distill-1.pt: not a distilled student; pass --overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["--timesteps", "99,x"], "argument --timesteps: comma-separated integer timesteps, got '99,x'"),
    (["--checkpoint", "distill-2"], "--checkpoint distill-2 is a distilled student: distill from the model"),
    (["--start-steps", "64"], "start_steps is not a setting of method 'trajectory' but of 'progressive'"),
])
def test_cli_refusals_come_before_any_work(tmp_path, capsys, argv, message):
    try:
        code = main([*CLI, "--steps", "2", "--out", str(tmp_path), *argv])
    except SystemExit as exit_info:  # argparse's own errors
        code = exit_info.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "distilling" not in err and not list(tmp_path.iterdir())


def test_cli_resume_command_keeps_the_flags(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("ddpm_fast.cli.distill.StopOnSignal", _StopAfter(1))
    assert main([*CLI, "--steps", "2,1", "--out", str(tmp_path), "--lr", "0.002"]) == 128 + 15
    command = json.loads(capsys.readouterr().out)["resume_with"]
    assert "--iterations 4 --batch-size 32 --lr 0.002" in command and command.endswith("--resume")
