"""What a new user meets first: start-up and Ctrl-C, checks that come before any output folder,
sample files that are not points, duplicate benchmark rows, errors under torchrun, pictures."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import ddpm_fast as D
import ddpm_fast.plotting as plotting
from ddpm_fast._values import TooLarge
from ddpm_fast.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Ctrl-C while a module loads: its import raises KeyboardInterrupt, as a SIGINT arriving then would.
_INTERRUPTED_IMPORT = """
import runpy, sys

class InterruptingFinder:  # the first import of the module, by its full name, meets a Ctrl-C
    def find_spec(self, fullname, path=None, target=None):
        if fullname == {module!r}:
            raise KeyboardInterrupt
        return None

sys.meta_path.insert(0, InterruptingFinder())
sys.argv = ["ddpm-fast", "sample", "--n", "10", "--out", {out!r}]
runpy.run_module("ddpm_fast", run_name="__main__")
"""


@pytest.mark.parametrize("module", ["ddpm_fast.cli", "torch", "matplotlib"])
def test_ctrl_c_while_loading_is_one_line_and_exit_130(tmp_path, module):
    code = _INTERRUPTED_IMPORT.format(module=module, out=str(tmp_path / "out"))
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 130, result.stderr[-2000:]
    assert result.stderr.strip().count("\n") == 0 and "interrupted" in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "out").exists()


_HELD_PROBE = """
import runpy, signal, sys

class Probe:  # reports whether Ctrl-C is held back when torch starts loading
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torch":
            held = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
            print("held:", held, file=sys.stderr)
        return None

sys.meta_path.insert(0, Probe())
sys.argv = ["ddpm-fast", "sample", "--n", "10", "--out", {out!r}, "--quiet"]
runpy.run_module("ddpm_fast", run_name="__main__")
"""


def test_ctrl_c_is_held_back_while_torch_loads(tmp_path):
    # a SIGINT inside torch's native start-up can abort the process or half-import numpy
    code = _HELD_PROBE.format(out=str(tmp_path / "out"))
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "held: True" in result.stderr


def test_a_real_ctrl_c_at_any_moment_of_the_start_is_one_line_and_exit_130(tmp_path):
    for delay_s in (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.7, 1.0):  # Python, torch, the model, sampling
        process = subprocess.Popen([sys.executable, "-m", "ddpm_fast", "sample", "--n", "3000000", "--backend",
                                    "eager", "--device", "cpu", "--out", str(tmp_path / "out"), "--quiet"],
                                   cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay_s)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
        assert (process.returncode, err) == (130, "ddpm-fast sample: interrupted\n"), delay_s
    assert not (tmp_path / "out").exists()


BAD_SAMPLING = {
    "steps past T": ["--sampler", "dpm++2m", "--steps", "101"],
    "grid past T": ["--grid", "150,50,1"],
    "eta for ddpm": ["--sampler", "ddpm", "--eta", "0.5"],
    "no tuned grid": ["--sampler", "dpm++2m", "--grid", "tuned"],
    "tf32 on a CPU": ["--precision", "tf32"],
}


@pytest.mark.parametrize("command", ["sample", "plot", "profile"])
@pytest.mark.parametrize("case", sorted(BAD_SAMPLING))
def test_a_check_that_needs_the_model_leaves_no_output_folder(tmp_path, capsys, command, case):
    out = tmp_path / "out" / "deeper"
    assert main([command, "--n", "10", "--device", "cpu", "--out", str(out), *BAD_SAMPLING[case]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", [b"not a checkpoint", b"PK\x03\x04 damaged zip"])
def test_a_damaged_checkpoint_leaves_no_output_folder(tmp_path, capsys, content):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(content)
    out = tmp_path / "out"
    for command in (["sample"], ["plot"], ["demo"], ["evaluate", "--sweep", "--json", str(out / "s.json")]):
        assert main([*command, "--checkpoint", str(bad), "--n", "10", "--out", str(out)]
                    if command[0] != "evaluate" else [*command, "--checkpoint", str(bad)]) == 2
        assert str(bad) in capsys.readouterr().err
        assert not out.exists(), command


def test_a_checkpoint_of_another_t_leaves_no_output_folder(tmp_path, capsys):
    D.save_checkpoint(tmp_path / "t50.pt", D.MLPDiffusion(50), D.make_schedule(50))
    out = tmp_path / "out"
    assert main(["sample", "--checkpoint", str(tmp_path / "t50.pt"), "--steps", "80", "--out", str(out)]) == 2
    assert "80" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("array, words", [(np.zeros(5, np.float32), "shape [5]"),
                                          (np.zeros((100, 3), np.float32), "shape [100, 3]"),
                                          (np.zeros((100, 2), np.int64), "int64")])
def test_evaluate_samples_names_the_shape_and_the_file(tmp_path, capsys, array, words):
    path = tmp_path / "points.npy"
    np.save(path, array)
    assert main(["evaluate", "--samples", str(path), "--n", "2", "--draws", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and str(path) in err and "[N, 2]" in err
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        D.load_samples(path)


def test_evaluate_samples_refuses_a_file_that_is_not_npy(tmp_path, capsys):
    path = tmp_path / "points.npy"
    path.write_text("x,y\n0.1,0.2\n")
    assert main(["evaluate", "--samples", str(path)]) == 2
    err = capsys.readouterr().err
    assert "not a NumPy .npy file" in err and "pickle" not in err and str(path) in err


def test_evaluate_samples_after_sample_says_what_fits(tmp_path, capsys):
    np.save(tmp_path / "samples.npy", np.zeros((10_000, 2), np.float32))  # what `sample` writes by default
    assert main(["evaluate", "--samples", str(tmp_path)]) == 2  # the defaults: 3 draws x 10,000
    assert "--draws 1" in capsys.readouterr().err


def test_bench_refuses_a_backend_given_twice(capsys):
    assert main(["bench", "--backends", "eager,eager", "--n", "8"]) == 2
    assert "'eager' given more than once" in capsys.readouterr().err


@pytest.mark.parametrize("rank, says", [("0", True), ("1", False)])
def test_under_torchrun_rank_0_alone_says_a_bad_input(monkeypatch, capsys, rank, says):
    monkeypatch.setattr("ddpm_fast.distributed.claim_rank_gpu", lambda: None)  # no GPU of the test's own touched
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit) as stop:
        main(["sample", "--steps", "abc"])
    assert stop.value.code == 2
    assert main(["plot", "--n", "5"]) == 2  # the same refusal on every rank: only sharded commands run there
    err = capsys.readouterr().err
    assert err.count("error") == (2 if says else 0), err


def test_the_snapshot_picture_is_titled_by_its_epoch_and_the_final_model_is_drawn(tmp_path, monkeypatch):
    titles = {}

    def capture(fig, path):
        name = os.path.basename(str(path)).lstrip(".").split(".")[0]
        titles[name] = fig._suptitle.get_text() if fig._suptitle else None
        open(path, "wb").close()
        return path
    monkeypatch.setattr(plotting, "save_figure", capture)
    assert main(["train", "--epochs", "3", "--n-points", "200", "--snapshot-every", "2", "--out", str(tmp_path),
                 "--quiet"]) == 0
    assert titles["trajectory_epoch2"] == "reverse process at epoch 2 (after 3 epochs)"
    assert titles["trajectory_final"] == "reverse process of the final model (after 3 epochs)"
    assert (tmp_path / "trajectory_final.png").exists()


def test_the_gif_frames_hold_every_point_on_equal_axes(tmp_path, monkeypatch):
    frames = []

    class Recorder:  # stands in for FuncAnimation: draws every frame and records its axes
        def __init__(self, fig, draw, frames, blit):
            self.fig, self.draw, self.count = fig, draw, frames

        def save(self, path, writer):
            for k in range(self.count):
                self.draw(k)
                ax = self.fig.axes[0]
                frames.append((ax.get_xlim(), ax.get_ylim(), ax.collections[0].get_offsets().copy()))
            open(path, "wb").close()
    monkeypatch.setattr(plotting, "FuncAnimation", Recorder)
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(500, 2, generator=generator)
    s_curve = D.make_s_curve(500, seed=0)
    trajectory = torch.stack([noise * (1 - w) + s_curve * w for w in torch.linspace(0, 1, 11)])  # [11, 500, 2]
    plotting.animate_reverse(trajectory, tmp_path / "r.gif", frames=11)
    for (x_lim, y_lim), points in ((f[:2], f[2]) for f in frames):
        assert x_lim[0] <= points[:, 0].min() and points[:, 0].max() <= x_lim[1]  # nothing clipped
        assert y_lim[0] <= points[:, 1].min() and points[:, 1].max() <= y_lim[1]
        assert np.isclose(x_lim[1] - x_lim[0], y_lim[1] - y_lim[0])  # one scale on both axes


@pytest.mark.parametrize("error, said", [(ValueError("the same on every rank"), False),
                                         (TooLarge("this rank's GPU has 1 GB free"), True),
                                         (RuntimeError("this rank's device"), True)])
def test_under_torchrun_a_ranks_own_error_is_said_by_that_rank(monkeypatch, capsys, error, said):
    def fails(args):
        raise error
    monkeypatch.setattr("ddpm_fast.distributed.claim_rank_gpu", lambda: None)
    monkeypatch.setattr("ddpm_fast.cli.sample.cmd_sample", fails)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["sample"]) == 2
    err = capsys.readouterr().err
    assert (f"ddpm-fast sample (rank 1): error: {error}\n" == err) if said else err == ""


def test_only_a_benchmark_row_refuses_a_name_given_twice():
    from ddpm_fast.cli.options import names
    assert names("ddpm,ddpm", D.SAMPLERS, "samplers") == ["ddpm", "ddpm"]  # bench --sampler ddpm,ddpm --steps 100,10
    with pytest.raises(ValueError, match="'fp32' given more than once"):
        names("fp32,bf16,fp32", ("fp32", "tf32", "bf16"), "precisions", unique=True)
