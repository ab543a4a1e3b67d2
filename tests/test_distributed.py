"""Past one process: row-keyed noise, sharded sample folders, DDP training and bench under torchrun
(2 CPU processes over gloo, launched by torchrun itself)."""
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import assert_close, point_errors
from tolerances import TRAIN_TOLERANCES

import ddpm_fast as D
from ddpm_fast.rows import ROW_BLOCK, keyed_draws, shard_rows
from ddpm_fast.samplers import make_plan
from ddpm_fast.shards import MANIFEST, load_samples

FEW_STEPS = dict(sampler="unipc", steps=5)  # cheap in the interpreter; noiseless steps but x_T
ANCESTRAL = dict(sampler="ddim", steps=6, eta=0.7)  # draws a z at every step but the last


@pytest.fixture(scope="module")
def model():
    return D.load_pretrained()[0]


RANK_THREADS = 1  # each rank's CPU threads (torchrun's own default): a BLAS may round a row by its threads


def _torchrun(*args, ranks=2, script=("-m", "ddpm_fast"), timeout=300):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
               *script, *args]
    env = {**os.environ, "OMP_NUM_THREADS": str(RANK_THREADS)}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


# --- row-keyed noise: in one process ----------------------------------------------------------

def test_keyed_draws_are_the_rows_of_one_whole_draw():
    """Across key-block boundaries, any split of the rows draws exactly the whole draw's numbers."""
    plan = make_plan(D.make_schedule(100), **ANCESTRAL)
    n = ROW_BLOCK + 1000
    x_T, noise = keyed_draws(5, 0, n, plan, torch.device("cpu"))
    for lo, hi in [(0, 1), (ROW_BLOCK - 3, ROW_BLOCK + 4), (7, n), (ROW_BLOCK, n)]:
        part_x, part_noise = keyed_draws(5, lo, hi, plan, torch.device("cpu"))
        assert torch.equal(part_x, x_T[lo:hi]) and torch.equal(part_noise, noise[:, lo:hi])
    assert noise[-1].abs().sum() == 0 and noise[:-1].std() > 0.9  # the last step adds no noise
    other, _ = keyed_draws(6, 0, n, plan, torch.device("cpu"))
    assert not torch.equal(other, x_T)  # another seed, other numbers
    assert not torch.equal(x_T[:1000], x_T[ROW_BLOCK:ROW_BLOCK + 1000])  # blocks draw apart


def _shards(model, n, world_size, **kwargs):
    """What ``world_size`` ranks compute, each rank's rows in one process, one after another."""
    return torch.cat([D.sample(model, n, rows=shard_rows(n, r, world_size), **kwargs) for r in range(world_size)])


def _ranks_pieces(model, n, **kwargs):
    """The rows 2 ranks compute, each rank's pieces computed here with the ranks' threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(RANK_THREADS)
    try:
        return _shards(model, n, 2, **kwargs)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.cpu_paths
@pytest.mark.parametrize("backend", ["eager", "compile"])
@pytest.mark.parametrize("case", ["ddpm", "ancestral"])
def test_same_rows_whatever_the_chunks_and_shards(model, backend, case):
    """A row's numbers depend on (seed, row) alone: one whole keyed draw, chunked draws and 2- or
    3-way shards give the same rows within float32 rounding. Not bit for bit: a BLAS may pick its
    matmul kernel, and so a row's rounding, by the matrix's row count (MKL's AVX2 path does, and
    OpenBLAS); the same pieces again give the same bits (test_same_pieces_same_bits)."""
    sampler = {} if case == "ddpm" else ANCESTRAL
    n = 1001 if case == "ddpm" else 5003
    kwargs = dict(seed=11, backend=backend, **sampler)
    whole = D.sample(model, n, keyed=True, chunk_size=None, **kwargs)
    assert_close(D.sample(model, n, chunk_size=450, **kwargs), whole)  # chunked: keyed by default
    for world_size in (2, 3):
        assert_close(_shards(model, n, world_size, **kwargs), whole)
    unkeyed = D.sample(model, n, chunk_size=None, **kwargs)  # an unchunked call keeps the torch stream
    assert point_errors(unkeyed, whole).median() > 1e-3  # other noise, other points
    if backend == "eager" and case == "ddpm":  # which is the reference's: the same call with a generator
        generator = torch.Generator().manual_seed(11)
        assert torch.equal(unkeyed, D.sample(model, n, generator=generator, backend="eager", chunk_size=None))


@pytest.mark.parametrize("backend", [pytest.param("eager", marks=pytest.mark.cpu_paths), "triton-fused"])
def test_same_pieces_same_bits(model, backend):
    """Bit for bit on one machine: the same shards in the same chunks (what a rerun or --resume
    computes) give the same bits, whatever else ran in between."""
    if backend.startswith("triton"):
        pytest.importorskip("triton")
    kwargs = dict(seed=9, backend=backend, chunk_size=64, **(ANCESTRAL if backend == "eager" else FEW_STEPS))
    first = _shards(model, 150, 2, **kwargs)
    D.sample(model, 150, keyed=True, **{**kwargs, "chunk_size": None})  # other shapes in between
    assert torch.equal(_shards(model, 150, 2, **kwargs), first)


@pytest.mark.cpu_paths
def test_tiny_shards_agree_to_rounding(model):
    n = 40
    whole = D.sample(model, n, keyed=True, seed=2, backend="eager", **ANCESTRAL)
    pieces = torch.cat([D.sample(model, n, rows=(lo, min(lo + 3, n)), seed=2, backend="eager", **ANCESTRAL)
                        for lo in range(0, n, 3)])
    assert_close(pieces, whole)


@pytest.mark.cpu_paths
def test_keyed_backends_share_the_noise(model):
    """compile and eager draw the same keyed noise, so they agree within the fp32 tolerance; the
    Triton backends take the same x_T and their own row-keyed z."""
    kwargs = dict(seed=4, keyed=True, **ANCESTRAL)
    eager = D.sample(model, 300, backend="eager", **kwargs)
    assert_close(D.sample(model, 300, backend="compile", **kwargs), eager)


def test_triton_shards_equal_one_launch(model):
    """Shards and chunks of a Triton launch draw the same in-kernel noise as one launch. In the CPU
    interpreter a row's matmul rounding depends on its place in a block (NumPy's BLAS), so the
    rows agree to rounding here; test_gpu.py checks them on CUDA."""
    pytest.importorskip("triton")
    n = 150
    kwargs = dict(seed=9, backend="triton-fused", **FEW_STEPS)
    whole = D.sample(model, n, keyed=True, **kwargs)
    assert_close(_shards(model, n, 2, **kwargs), whole)
    assert_close(D.sample(model, n, chunk_size=64, **kwargs), whole)
    other_seed = D.sample(model, n, keyed=True, **{**kwargs, "seed": 10})
    assert point_errors(other_seed, whole).median() > 1e-3


@pytest.mark.parametrize("kwargs, message", [
    (dict(rows=(5, 3)), "0 <= lo <= hi <= n"),
    (dict(rows=(0, 11)), "0 <= lo <= hi <= n"),
    (dict(rows=(0, 4), keyed=False), "keyed=False would draw other numbers"),
    (dict(keyed=True, seed=None), "needs a seed"),
    (dict(keyed=True, x_T=torch.zeros(10, 2)), "cannot be combined with injected"),
])
def test_keyed_requests_checked(model, kwargs, message):
    kwargs = {"seed": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        D.sample(model, 10, backend="eager", **kwargs)


# --- torchrun: the command-line flags ----------------------------------------------------------

def test_every_flag_has_a_name_torchrun_passes_on():
    """torchrun parses the arguments after ``-m ddpm_fast`` too and refuses an abbreviation of its own
    options (``--n``): every option of every subcommand must have a name that reaches us intact."""
    from torch.distributed.run import get_args_parser

    from ddpm_fast.cli import build_parser
    launcher = get_args_parser()
    subcommands = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert {"sample", "train", "bench", "evaluate"} <= set(subcommands)
    for name, parser in subcommands.items():
        for action in parser._actions:
            long_names = [o for o in action.option_strings if o.startswith("--") and o != "--help"]
            if not long_names:
                continue
            passes = []
            for option in long_names:
                argv = ["--nproc-per-node=2", "-m", "ddpm_fast", name, option, "1"]
                try:
                    parsed = launcher.parse_args(argv)
                except SystemExit:
                    continue
                if parsed.training_script_args == [name, option, "1"]:
                    passes.append(option)
            assert passes, f"{name} {'/'.join(long_names)}: torchrun refuses or takes every name"
    with pytest.raises(SystemExit):  # why --n has a long name: torchrun refuses it
        launcher.parse_args(["-m", "ddpm_fast", "sample", "--n", "5"])


# --- torchrun: sharded sampling ----------------------------------------------------------------

def _check_manifest(folder, n, world_size, backend):
    manifest = json.loads((folder / MANIFEST).read_text())
    assert (manifest["n"], manifest["world_size"], manifest["backend"], manifest["shape"]) == \
        (n, world_size, backend, [n, 2])
    assert [p["rows"] for p in manifest["parts"]] == [list(shard_rows(n, r, world_size)) for r in range(world_size)]
    return manifest


@pytest.mark.parametrize("backend, sampler, n", [pytest.param("eager", {}, 1001, marks=pytest.mark.cpu_paths),
                                                 ("triton-fused", FEW_STEPS, 130)])
def test_two_ranks_write_the_rows_of_one_process(model, tmp_path, backend, sampler, n):
    if backend.startswith("triton"):
        pytest.importorskip("triton")
    flags = [f"--{k}={v}" for k, v in sampler.items()]
    done = _torchrun("sample", f"--num-samples={n}", "--seed=7", f"--backend={backend}", "--device=cpu",
                     "--chunk-size=300", f"--out={tmp_path}", "--quiet", *flags)
    assert done.returncode == 0, done.stderr[-3000:]
    _check_manifest(tmp_path, n, 2, backend)
    samples = load_samples(tmp_path)
    assert samples.shape == (n, 2) and len(samples.parts) == 2
    # the ranks' pieces computed here: bit for bit on eager; to rounding in the Triton interpreter,
    # whose NumPy BLAS threads are not torch's; to rounding against one whole keyed call
    expected = _ranks_pieces(model, n, seed=7, backend=backend, chunk_size=300, **sampler).numpy()
    if backend == "eager":
        assert np.array_equal(np.asarray(samples), expected)
        assert np.array_equal(samples[n // 2 - 2:n // 2 + 3], expected[n // 2 - 2:n // 2 + 3])  # across parts
        assert np.array_equal(samples[-1], expected[-1])
    assert_close(torch.from_numpy(np.asarray(samples)), torch.from_numpy(expected))
    assert_close(torch.from_numpy(np.asarray(samples)), D.sample(model, n, seed=7, keyed=True, backend=backend,
                                                                 **sampler))
    report = json.loads(subprocess.run([sys.executable, "-m", "ddpm_fast", "evaluate", "--samples", str(tmp_path),
                                        "--n", str(n // 2), "--draws", "2", "--quiet"],
                                       capture_output=True, text=True, check=True).stdout)
    assert report["draws"] == 2 and report["run"]["world_size"] == 2 and report["median"]["swd"] > 0


def test_killed_rank_leaves_no_manifest_and_resume_keeps_the_good_part(model, tmp_path):
    n = 900
    flags = [f"--num-samples={n}", "--seed=3", "--backend=eager", "--device=cpu", "--chunk-size=200",
             f"--out={tmp_path}", "--quiet"]
    killed = _torchrun("sample", *flags, script=[os.path.join(os.path.dirname(__file__), "dist_kill_rank.py")])
    assert killed.returncode != 0
    assert not (tmp_path / MANIFEST).exists() and (tmp_path / "part-00000.npy").exists()
    assert not (tmp_path / "part-00001.npy").exists()
    with pytest.raises(ValueError, match="incomplete"):
        load_samples(tmp_path)
    resumed = _torchrun("sample", *flags, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    report = json.loads(resumed.stdout)
    assert [p["reused"] for p in report["parts"]] == [True, False]
    assert "rank 1: part-00001.npy is sampled again: no finished part" in resumed.stderr
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]  # the dead rank's temporary
    expected = _ranks_pieces(model, n, seed=3, backend="eager", chunk_size=200).numpy()
    assert np.array_equal(np.asarray(load_samples(tmp_path)), expected)
    part = tmp_path / "part-00000.npy"  # a changed part is caught by its checksum
    data = np.load(part)
    data[0, 0] += 1
    np.save(part, data)
    with pytest.raises(ValueError, match="sha256 does not match"):
        load_samples(tmp_path)


# --- torchrun: data-parallel training and bench -----------------------------------------------

@pytest.mark.cpu_paths
def test_two_rank_training_matches_one_rank(tmp_path, record_property):
    """2 ranks x 64 rows = the 1-rank batch of 128 on the same draws: equal within float tolerance
    (the ranks' identical weights are checked by train itself, test_ranks_must_agree)."""
    config = D.TrainConfig(epochs=2, n_points=1000, batch_size=128, snapshot_every=0)
    done = _torchrun("train", "--epochs=2", "--n-points=1000", "--batch-size=128", "--snapshot-every=0",
                     f"--out={tmp_path}", "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert (report["world_size"], report["global_batch"], report["epochs_done"]) == (2, 128, 2)
    two, _, meta = D.load_checkpoint(tmp_path / "checkpoint.pt")
    assert (meta["world_size"], meta["global_batch"], meta["per_rank_batch"]) == (2, 128, 64)
    one = D.train(config, progress=False)
    atol, rtol = TRAIN_TOLERANCES["ddp"]
    for name, b in one.model.state_dict().items():
        a = two.state_dict()[name]
        difference = float((a.double() - b.double()).abs().max())
        record_property(f"difference {name}", difference)  # the figure tests/tolerances.py states
        assert difference <= atol and difference <= rtol * float(b.abs().max()), (name, difference)
    torch.manual_seed(config.seed)  # the weights train() starts from: the runs moved them
    start = D.MLPDiffusion(config.n_steps, config.num_units).state_dict()["linears.0.weight"]
    assert float((two.state_dict()["linears.0.weight"] - start).abs().max()) > 100 * atol
    assert meta["final_loss"] == pytest.approx(one.losses[-1], rel=1e-5)


def test_ranks_must_agree(model):
    from ddpm_fast.training.loop import _check_ranks_agree
    ranks = SimpleNamespace(distributed=True, world_size=2, gather=lambda digest: [digest, "0" * 64])
    with pytest.raises(RuntimeError, match="different weights"):
        _check_ranks_agree(ranks, [model])


def test_bench_reports_aggregate_throughput(tmp_path):
    out = tmp_path / "bench.json"
    done = _torchrun("bench", "--num-samples=200", "--backends=eager", "--repeats=3", "--warmup=1",
                     "--device=cpu", f"--json={out}", "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    row = json.loads(out.read_text())["rows"][0]
    assert row["world_size"] == 2 and row["aggregate_point_steps_per_s"] > 0
    assert row["scaling_efficiency"] == pytest.approx(row["median_s"] / row["parallel_median_s"])
    assert "agg Mpt-step/s" in done.stdout and "scaling" in done.stdout


# --- pieces, in one process --------------------------------------------------------------------

def test_sample_parts_index_like_one_array():
    from ddpm_fast.shards import SampleParts
    full = np.random.default_rng(0).standard_normal((100, 2)).astype(np.float32)
    samples = SampleParts([full[:33], full[33:34], full[34:70], full[70:]], {})
    for rows in [slice(None), slice(5, 99, 3), slice(30, 40), slice(-30, None, 7), slice(None, None, -3),
                 slice(90, 10, -4), slice(50, 50)]:
        assert np.array_equal(samples[rows], full[rows]) and np.array_equal(samples[rows, 1], full[rows, 1])
    for row in (0, 32, 33, 34, 99, -1, -100):
        assert np.array_equal(samples[row], full[row])
    assert np.shares_memory(samples[40:50], full)  # within one part: a view of its memory map
    assert np.array_equal(np.asarray(samples), full) and len(samples) == 100
    with pytest.raises(IndexError):
        samples[100]
    with pytest.raises(TypeError, match="row slice first"):
        samples[[1, 2]]


class _Ranks:
    """A fake World of two ranks seen from rank 0: ``gather`` answers from a script."""
    def __init__(self, answers):
        self.answers, self.rank, self.world_size, self.is_main, self.distributed = list(answers), 0, 2, True, True

    def gather(self, obj):
        answer = self.answers.pop(0)
        return answer(obj) if callable(answer) else answer


def test_a_folder_another_rank_cannot_see_is_refused(tmp_path):
    from ddpm_fast.cli.torchrun import _check_shared_folder
    _check_shared_folder(_Ranks([lambda token: [token, None], lambda sees: [sees, True]]), str(tmp_path))
    with pytest.raises(RuntimeError, match=r"ranks \[1\] do not see .* shared file system"):
        _check_shared_folder(_Ranks([lambda token: [token, None], lambda sees: [sees, False]]), str(tmp_path))
    assert not os.listdir(tmp_path)  # the marker is gone either way


def test_batch_shards_tile_every_batch():
    from ddpm_fast.training.steps import EpochDraws
    draws = EpochDraws.empty(n_points=23, batch_size=5, device=torch.device("cpu"))  # batches of 5, 5, 5, 5, 3
    shards = [draws.shard(r, 4) for r in range(4)]
    assert [s.t.shape[1] for s in shards] == [1, 1, 1, 2]  # every rank at least one row
    assert [sum(s.counts[-1] for s in shards)] == [3] and all(sum(s.counts[i] for s in shards) == 5 for i in range(4))
    torch.testing.assert_close(sum(s.weight.sum(dim=1) for s in shards) / 4, draws.weight.sum(dim=1))


def test_other_commands_refused_on_several_ranks(monkeypatch, capsys):
    from ddpm_fast.cli import main
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["plot", "--n", "10"]) == 2
    assert "only sample, train, bench run on several ranks; run plot without torchrun" in capsys.readouterr().err


def test_plain_keyed_sample_and_folders_of_one_kind(model, tmp_path, capsys):
    """`sample --keyed` without torchrun writes the rows a sharded run writes; a folder holds one kind
    of output; load_samples and evaluate --samples take either kind, or the manifest's path."""
    from ddpm_fast.cli import main
    from ddpm_fast.shards import write_manifest, write_part
    plain = tmp_path / "plain"
    assert main(["sample", "--n", "300", "--seed", "5", "--backend", "eager", "--keyed", "--out", str(plain),
                 "--quiet"]) == 0
    expected = D.sample(model, 300, seed=5, keyed=True, backend="eager").numpy()
    assert np.array_equal(np.load(plain / "samples.npy"), expected)
    assert np.array_equal(load_samples(plain), expected)  # a single-process run's folder
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    params = {"n": 300}
    records = [write_part(str(sharded), r, shard_rows(300, r, 2), params,
                          lambda a, b: torch.from_numpy(expected[a:b]), 100) for r in range(2)]
    write_manifest(str(sharded), params, records)
    assert np.array_equal(np.asarray(load_samples(sharded / MANIFEST)), expected)
    assert main(["sample", "--n", "10", "--backend", "eager", "--out", str(sharded), "--quiet"]) == 2
    assert "holds a sharded run" in capsys.readouterr().err
    assert main(["evaluate", "--samples", str(sharded), "--n", "200", "--draws", "2"]) == 2
    assert "--draws 2 x --n 200 needs 400 points" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not a .npy file or a samples folder"):
        load_samples(sharded / "part-00000.json")
    with pytest.raises(ValueError, match="holds no samples"):
        load_samples(_empty(tmp_path))


def _empty(tmp_path):
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"
