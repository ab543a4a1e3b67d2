"""Ctrl-C in `train` keeps every finished epoch, and `train --resume` continues bit for bit."""
import importlib
import json
import signal

import pytest
import torch

import ddpm_fast as D
from ddpm_fast.cli import main

train_steps = importlib.import_module("ddpm_fast.training.steps")
TINY = ["--n-points", "300", "--batch-size", "128", "--snapshot-every", "1", "--seed", "3", "--quiet"]


def _interrupt_at_batch(monkeypatch, batch: int, signum=signal.SIGINT):
    """Deliver a real signal to this process during batch ``batch`` (1-based) of the run."""
    real_loss, calls = train_steps.loss_from_draws, {"n": 0}

    def loss_then_signal(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == batch:
            signal.raise_signal(signum)
        return real_loss(*args, **kwargs)
    monkeypatch.setattr(train_steps, "loss_from_draws", loss_then_signal)


def _weights(path):
    model, _, meta = D.load_checkpoint(path)
    return model.state_dict(), meta


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_then_resume_equals_one_run(tmp_path, monkeypatch, capsys, signum):
    # 300 points in batches of 128: 3 batches an epoch. A signal in batch 8 (epoch 2) keeps epochs 0-1.
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(["train", "--epochs", "4", "--out", str(whole), *TINY]) == 0
    _interrupt_at_batch(monkeypatch, 8, signum)
    capsys.readouterr()
    assert main(["train", "--epochs", "4", "--out", str(cut), *TINY]) == 128 + signum
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert f"stopped after 2 of 4 epochs; resume with: ddpm-fast train --out {cut} --resume" in err
    assert report["epochs_done"] == 2 and "--resume" in report["resume_with"]
    state, meta = _weights(cut / "checkpoint.pt")
    assert meta["epochs_done"] == 2 and len(meta["losses"]) == 2
    monkeypatch.undo()

    assert main(["train", "--resume", "--out", str(cut), "--quiet"]) == 0
    expected, expected_meta = _weights(whole / "checkpoint.pt")
    resumed, resumed_meta = _weights(cut / "checkpoint.pt")
    assert all(torch.equal(expected[k], resumed[k]) for k in expected)
    assert resumed_meta["losses"] == expected_meta["losses"]
    snapshots_whole = torch.load(whole / "snapshots.pt")
    snapshots_cut = torch.load(cut / "snapshots.pt")
    assert sorted(snapshots_cut) == [0, 1, 2, 3]
    assert all(torch.equal(snapshots_whole[k], snapshots_cut[k]) for k in snapshots_whole)


def test_resume_extends_and_refuses_another_config(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(out), *TINY]) == 0
    assert main(["train", "--resume", "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    assert _weights(out / "checkpoint.pt")[1]["epochs_done"] == 2
    assert main(["train", "--resume", "--epochs", "3", "--lr", "0.01", "--out", str(out), "--quiet"]) == 2


def test_train_never_overwrites_a_checkpoint_unasked(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(out), *TINY]) == 0
    before = (out / "checkpoint.pt").read_bytes()
    assert main(["train", "--epochs", "1", "--out", str(out), *TINY]) == 2
    assert "pass --resume to continue it or --overwrite" in capsys.readouterr().err
    assert (out / "checkpoint.pt").read_bytes() == before
    assert main(["train", "--epochs", "1", "--out", str(out), "--overwrite", *TINY]) == 0


@pytest.mark.parametrize("stop_at_call, epochs_done", [(0, 0), (4, 1)])  # in the first epoch, in the second
def test_api_stop_drops_the_epoch_in_progress(stop_at_call, epochs_done):
    config = D.TrainConfig(n_points=300, epochs=3, snapshot_every=0, seed=1)
    calls = iter(range(100))
    result = D.train(config, progress=False, should_stop=lambda: next(calls) >= stop_at_call)
    assert result.interrupted and result.epochs_done == epochs_done
    resumed = D.train(config, progress=False, resume=(result.model, result.train_state()))
    whole = D.train(config, progress=False)
    assert resumed.losses == whole.losses
    assert all(torch.equal(a, b) for a, b in zip(resumed.model.parameters(), whole.model.parameters()))


def test_resume_needs_a_training_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    D.save_checkpoint(out / "checkpoint.pt", D.MLPDiffusion(100), D.make_schedule())
    assert main(["train", "--resume", "--out", str(out), "--quiet"]) == 2
    assert "has no training state to resume from" in capsys.readouterr().err


def test_resume_faults_are_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "2", "--out", str(out), *TINY]) == 0
    assert main(["train", "--resume", "--epochs", "1", "--out", str(out), "--quiet"]) == 2
    assert "--epochs 1 is fewer than the 2 epochs" in capsys.readouterr().err
    assert main(["train", "--resume", "--overwrite", "--out", str(out), "--quiet"]) == 2
    assert "pass one" in capsys.readouterr().err
    assert main(["train", "--resume", "--out", str(tmp_path / "none"), "--quiet"]) == 2
    assert not (tmp_path / "none").exists()
    capsys.readouterr()
    (out / "snapshots.pt").write_bytes(b"garbage")
    assert main(["train", "--resume", "--epochs", "3", "--out", str(out), "--quiet"]) == 2
    assert "snapshots.pt' is not a readable snapshots file" in capsys.readouterr().err
    payload = torch.load(out / "checkpoint.pt")
    for damage, message in (({}, "'config' is NoneType, not dict"),
                            ({"rng_state": "x"}, "'rng_state' is str, not Tensor"),
                            ({"losses": "abc"}, "'losses' is str, not list")):
        torch.save({**payload, "train_state": {**payload["train_state"], **damage} if damage else {}},
                   out / "checkpoint.pt")
        assert main(["train", "--resume", "--epochs", "3", "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "has a damaged training state" in err and message in err and err.count("\n") == 1, err


def test_overwrite_drops_the_old_runs_snapshots(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(out), *TINY]) == 0
    assert (out / "snapshots.pt").exists()
    assert main(["train", "--epochs", "1", "--out", str(out), "--overwrite", *TINY[:-1], "--snapshot-every", "0",
                 "--quiet"]) == 0
    assert not (out / "snapshots.pt").exists()


def test_zero_epochs_draw_no_empty_loss_curve(tmp_path):
    assert main(["train", "--epochs", "0", "--out", str(tmp_path), *TINY]) == 0
    assert (tmp_path / "checkpoint.pt").exists() and not (tmp_path / "loss.png").exists()


def test_a_second_ctrl_c_during_the_save_does_not_lose_it(tmp_path, monkeypatch, capfd):
    import ddpm_fast.cli.train as cli
    real_save = cli.save_run

    def save_interrupted_twice(out, result):
        signal.raise_signal(signal.SIGINT)  # impatient user: more Ctrl-C while saving
        signal.raise_signal(signal.SIGINT)
        return real_save(out, result)
    monkeypatch.setattr(cli, "save_run", save_interrupted_twice)
    _interrupt_at_batch(monkeypatch, 5)
    assert main(["train", "--epochs", "4", "--save-every", "0", "--out", str(tmp_path), *TINY]) == 130
    assert "saving a checkpoint: wait a moment" in capfd.readouterr().err  # the handler writes to fd 2
    assert D.load_checkpoint(tmp_path / "checkpoint.pt")[2]["epochs_done"] == 1


def test_a_first_ctrl_c_during_a_periodic_save_still_stops(tmp_path, monkeypatch):
    import ddpm_fast.cli.train as cli
    real_save, saves = cli.save_run, []

    def save_with_a_signal(out, result):
        saves.append(result.epochs_done)
        if len(saves) == 1:
            signal.raise_signal(signal.SIGINT)
        return real_save(out, result)
    monkeypatch.setattr(cli, "save_run", save_with_a_signal)
    assert main(["train", "--epochs", "50", "--save-every", "1", "--out", str(tmp_path), *TINY]) == 130
    assert saves == [1, 1]  # the periodic save after epoch 1, then the stop's save of the same epoch
    assert D.load_checkpoint(tmp_path / "checkpoint.pt")[2]["epochs_done"] == 1


def test_resume_warns_when_it_cannot_be_bit_exact():
    config = D.TrainConfig(n_points=300, epochs=2, snapshot_every=0)
    calls = iter(range(100))
    result = D.train(config, progress=False, should_stop=lambda: next(calls) >= 3)  # after epoch 1
    assert result.epochs_done == 1
    state = {**result.train_state(), "num_threads": torch.get_num_threads() + 1}
    with pytest.warns(RuntimeWarning, match="num_threads .* then, .* now: the run continues, but not bit for bit"):
        D.train(config, progress=False, resume=(result.model, state))


def test_fewer_than_ten_steps_snapshot_every_step(tmp_path):
    assert main(["train", "--epochs", "1", "--n-steps", "5", "--out", str(tmp_path), *TINY]) == 0
    snapshots = torch.load(tmp_path / "snapshots.pt")
    assert snapshots[0].shape == (5, 300, 2)
