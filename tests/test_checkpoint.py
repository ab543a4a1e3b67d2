import pytest
import torch
from original_code import OriginalMLPDiffusion

import ddpm_fast as D


def test_roundtrip(tmp_path):
    model, sched = D.MLPDiffusion(50, 32), D.make_schedule(50, "linear")
    D.save_checkpoint(tmp_path / "c.pt", model, sched, {"note": "x"})
    loaded, sched2, meta = D.load_checkpoint(tmp_path / "c.pt")
    assert meta == {"note": "x"} and sched2.kind == "linear" and sched2.n_steps == 50
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    assert torch.equal(sched.betas, sched2.betas)


def test_plain_state_dict_of_the_original_code(tmp_path):
    original = OriginalMLPDiffusion(100)
    torch.save(original.state_dict(), tmp_path / "orig.pt")
    model, sched, meta = D.load_checkpoint(tmp_path / "orig.pt")
    x, t = torch.randn(7, 2), torch.randint(0, 100, (7,))
    assert torch.equal(model(x, t), original(x.clone(), t))
    assert sched.n_steps == 100 and meta["source"] == "plain state dict"


def test_missing_truncated_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        D.load_checkpoint(tmp_path / "nope.pt")
    D.save_checkpoint(tmp_path / "c.pt", D.MLPDiffusion(100), D.make_schedule())
    data = (tmp_path / "c.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        D.load_checkpoint(tmp_path / "cut.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        D.load_checkpoint(tmp_path / "text.pt")
    torch.save({"something": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="neither a ddpm-fast checkpoint nor an MLPDiffusion state dict"):
        D.load_checkpoint(tmp_path / "other.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="not a checkpoint"):
        D.load_checkpoint(tmp_path / "list.pt")


def test_pretrained_loads():
    model, sched = D.load_pretrained()
    assert sched.n_steps == 100 and model.config.num_units == 128
    assert not model.training
