"""The fused MLP-plus-embedding kernel against the float64 PyTorch module."""
import pytest
import torch
from helpers import assert_close, float64_model, precisions_for

import ddpm_fast as D
from ddpm_fast.kernels import check_fused_layout, mlp_forward, mlp_weights


@pytest.mark.parametrize("n", [1, 7, 257, 1000, 4097])
@pytest.mark.parametrize("shared_t", [None, 0, 1, 50, 99])
def test_mlp_parity(device, n, shared_t):
    torch.manual_seed(n)
    model = D.MLPDiffusion(100).to(device)
    x = torch.randn(n, 2, device=device)
    if shared_t is None:  # per-row timesteps covering every class
        t = torch.randint(0, 100, (n,), device=device)
        t[: min(n, 4)] = torch.tensor([0, 1, 50, 99], device=device)[: min(n, 4)]
    else:
        t = shared_t
    t_rows = torch.as_tensor(t, device="cpu").expand(n) if shared_t is not None else t.cpu()
    expected = float64_model(model)(x.double().cpu(), t_rows)
    for precision in precisions_for(device):
        assert_close(mlp_forward(mlp_weights(model), x, t, precision), expected, precision, one_step=True)


@pytest.mark.parametrize("update", ["in place", "through .data", "replaced", "load_state_dict"])
def test_kernels_see_every_kind_of_weight_update(device, update):
    """The kernels read the live parameters: an optimizer step, an EMA update through
    ``p.data`` (which does not move ``p._version``), a replaced parameter and
    ``load_state_dict`` are all seen by the next launch."""
    torch.manual_seed(7)
    model = D.MLPDiffusion(100).to(device)
    other = D.MLPDiffusion(100).to(device)
    x, t = torch.randn(5, 2, device=device), torch.full((5,), 3, device=device)
    before = mlp_forward(mlp_weights(model), x, t)
    layer = model.linears[2]
    if update == "in place":
        with torch.no_grad():
            layer.weight.mul_(2)
    elif update == "through .data":
        layer.weight.data.mul_(0.5).add_(0.5 * other.linears[2].weight.data)  # as EMA code does
    elif update == "replaced":
        layer.weight = torch.nn.Parameter(other.linears[2].weight.detach().clone())
    else:
        model.load_state_dict(other.state_dict())
    after = mlp_forward(mlp_weights(model), x, t)
    assert_close(after, float64_model(model)(x.double().cpu(), t.cpu()), "fp32", one_step=True)
    assert not torch.allclose(before, after)


@pytest.mark.parametrize("make,match", [
    (lambda: D.MLPDiffusion(100, num_units=100), "power of two"),
    (lambda: torch.nn.Linear(2, 2), "ModuleLists"),
    (lambda: D.MLPDiffusion(100).double(), "float32 model"),
])
def test_unsupported_models_are_rejected(make, match):
    with pytest.raises((NotImplementedError, TypeError), match=match):
        check_fused_layout(make())


def test_other_depth_is_rejected():
    model = D.MLPDiffusion(100)
    model.linears.append(torch.nn.ReLU())
    with pytest.raises(NotImplementedError, match="not supported by the fused kernels: expected 7"):
        mlp_weights(model)


def test_bad_inputs(device):
    model = D.MLPDiffusion(100).to(device)
    pack = mlp_weights(model)
    with pytest.raises(ValueError, match=r"shape \[N, 2\]"):
        mlp_forward(pack, torch.randn(4, 3, device=device), 0)
    with pytest.raises(TypeError, match="float32"):
        mlp_forward(pack, torch.randn(4, 2, device=device, dtype=torch.float64), 0)
    with pytest.raises(ValueError, match=r"\[0, 100\)"):
        mlp_forward(pack, torch.randn(4, 2, device=device), 100)
    with pytest.raises(ValueError, match="is on meta"):
        mlp_forward(pack, torch.randn(4, 2, device=device), torch.zeros(4, dtype=torch.long, device="meta"))
    assert mlp_forward(pack, torch.randn(0, 2, device=device), 0).shape == (0, 2)


def test_non_contiguous_points(device):
    model = D.MLPDiffusion(100).to(device)
    wide = torch.randn(9, 4, device=device)
    x = wide[:, 1:3]  # a strided view
    assert not x.is_contiguous()
    assert_close(mlp_forward(mlp_weights(model), x, 5),
                 model(x.contiguous(), torch.tensor([5], device=device)).double(),
                 "fp32", one_step=True)
