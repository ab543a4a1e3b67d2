"""Nothing is lost: every output is written to a temporary name and renamed, and output paths
are checked before any work."""
import errno
import os

import numpy as np
import pytest
import torch

import ddpm_fast as D
from ddpm_fast._io import atomic_path, check_output_dir, staged_outputs, writes_in_place
from ddpm_fast.cli import main


def _disk_full_after(nbytes, path_arg=0):
    """A writer that writes ``nbytes`` of garbage to its ``path_arg``-th argument and fails like a
    full disk."""
    def failing(*args, **kwargs):
        target = args[path_arg]
        with open(target, "wb") as f:
            f.write(b"x" * nbytes)
        raise OSError(errno.ENOSPC, "No space left on device", str(target))
    return failing


def _leftovers(directory):
    return [name for name in os.listdir(directory) if ".tmp" in name]


def test_staged_outputs_commit_all_or_none(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    b.write_text("old b")
    with pytest.raises(RuntimeError):
        with staged_outputs() as staged:
            with open(staged.path(a), "w") as f:
                f.write("new a")
            raise RuntimeError("the second writer failed")
    assert a.read_text() == "old a" and b.read_text() == "old b" and not _leftovers(tmp_path)
    with staged_outputs() as staged:
        for path in (a, b):
            with open(staged.path(path), "w") as f:
                f.write("new")
    assert a.read_text() == b.read_text() == "new" and not _leftovers(tmp_path)
    with pytest.raises(FileNotFoundError, match="nothing was written"):
        with atomic_path(a):
            pass
    assert a.read_text() == "new"


def test_failed_checkpoint_save_keeps_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    model, schedule = D.MLPDiffusion(100), D.make_schedule()
    D.save_checkpoint(path, model, schedule)
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", _disk_full_after(1000, path_arg=1))
    with pytest.raises(OSError, match="No space left"):
        D.save_checkpoint(path, D.MLPDiffusion(100), schedule)
    assert path.read_bytes() == before and not _leftovers(tmp_path)
    D.load_checkpoint(path)


def test_failed_sample_write_keeps_all_old_outputs(tmp_path, monkeypatch, capsys):
    args = ["sample", "--n", "20", "--backend", "eager", "--out", str(tmp_path), "--quiet"]
    assert main(args) == 0
    names = ("samples.npy", "samples.csv", "samples.png")
    before = {name: (tmp_path / name).read_bytes() for name in names}
    monkeypatch.setattr(np, "savetxt", _disk_full_after(10))  # the CSV is cut mid-line
    assert main([*args, "--seed", "1"]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert {name: (tmp_path / name).read_bytes() for name in names} == before
    assert not _leftovers(tmp_path)


def test_csv_round_trips_float32(tmp_path):
    assert main(["sample", "--n", "50", "--backend", "eager", "--out", str(tmp_path), "--quiet"]) == 0
    npy = np.load(tmp_path / "samples.npy")
    csv = np.loadtxt(tmp_path / "samples.csv", delimiter=",", skiprows=1, dtype=np.float32)
    assert np.array_equal(npy, csv)


@pytest.mark.parametrize("command", [["sample"], ["plot"], ["demo"], ["profile", "--backend", "eager"],
                                     ["train", "--epochs", "1"]])
def test_output_path_checked_before_the_work(tmp_path, monkeypatch, capsys, command):
    def no_work(*args, **kwargs):
        raise AssertionError("the work started before the output path was checked")
    monkeypatch.setattr("ddpm_fast.checkpoint.load_checkpoint", no_work)
    monkeypatch.setattr("ddpm_fast.training.loop.train", no_work)
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    for out, message in ((a_file, "is a file, not a directory"), (a_file / "sub", "is a file, not a directory")):
        assert main([*command, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and str(a_file) in err


def test_bench_output_files_checked_before_the_work(tmp_path, capsys):
    assert main(["bench", "--n", "8", "--backends", "eager", "--json", str(tmp_path)]) == 2
    assert "is a directory, not a file" in capsys.readouterr().err


def test_check_output_dir_refuses_an_unwritable_directory(tmp_path, monkeypatch):
    real_open = open

    def read_only_fs(path, *args, **kwargs):  # root ignores chmod, so fake a read-only mount
        if ".write-probe" in str(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr("builtins.open", read_only_fs)
    with pytest.raises(OSError, match="cannot write into this directory"):
        check_output_dir(tmp_path)


def test_symlinks_and_devices_are_written_through(tmp_path):
    real = tmp_path / "real" / "result.json"
    real.parent.mkdir()
    link = tmp_path / "link.json"
    link.symlink_to(real)
    with atomic_path(link) as temp:
        with open(temp, "w") as f:
            f.write("{}")
    assert link.is_symlink() and real.read_text() == "{}"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with staged_outputs() as staged:  # devices, pipes and /dev/stdout are written in place, never renamed over
        for special in ("/dev/null", "/dev/stdout", str(fifo)):
            assert staged.path(special) == special
        through_link = staged.path(link)
        assert through_link.startswith(str(real.parent))  # a temporary beside the link's target
        with open(through_link, "w") as f:
            f.write("{}")
    assert writes_in_place(fifo) and not writes_in_place(real) and not writes_in_place(tmp_path / "new.json")


def test_a_replaced_file_keeps_its_permissions(tmp_path):
    path = tmp_path / "private.pt"
    path.write_text("old")
    path.chmod(0o600)
    with atomic_path(path) as temp, open(temp, "w") as f:
        f.write("new")
    assert path.read_text() == "new" and (path.stat().st_mode & 0o777) == 0o600


@pytest.mark.parametrize("command, target", [(["sample"], "samples.png"), (["plot"], "q_grid.png"),
                                             (["demo"], "reverse.gif"), (["train", "--epochs", "1"], "loss.png")])
def test_an_output_file_that_is_a_directory_is_refused_first(tmp_path, monkeypatch, capsys, command, target):
    monkeypatch.setattr("ddpm_fast.checkpoint.load_checkpoint", lambda *a, **k: pytest.fail("work started"))
    monkeypatch.setattr("ddpm_fast.training.loop.train", lambda *a, **k: pytest.fail("work started"))
    (tmp_path / target).mkdir()
    assert main([*command, "--out", str(tmp_path)]) == 2
    assert f"{target}: is a directory, not a file" in capsys.readouterr().err


def test_an_atomic_writer_inside_a_group_writes_once(tmp_path, monkeypatch):
    import ddpm_fast._io as io_module
    temporaries = []
    real_temp = io_module._temp_beside
    monkeypatch.setattr(io_module, "_temp_beside", lambda path: temporaries.append(path) or real_temp(path))
    target = tmp_path / "checkpoint.pt"
    with staged_outputs() as staged:
        D.save_checkpoint(staged.path(target), D.MLPDiffusion(10, 16), D.make_schedule(10))  # atomic itself
    assert temporaries == [str(target)]  # one temporary, written and fsynced once, not a temporary's temporary
    assert D.load_checkpoint(target)[0].config.n_steps == 10 and not _leftovers(tmp_path)
