"""The bundled model's samples stay as good as the original recipe's (README: how it was trained)."""
import ddpm_fast as D


def test_bundled_model_sample_quality():
    model, schedule = D.load_pretrained()
    points = D.sample(model, 10_000, schedule=schedule, seed=0, backend="eager")
    report = D.quality_report(points, "s_curve", seed=0)
    # The original code's own recipe reached SWD about 0.005 (issue 2); the data-vs-data floor
    # is the best any sampler can show at this N. Measured for the bundled model: see README.
    assert report["swd"] < 0.005
    assert report["swd"] < 5 * report["swd_floor"]
    assert report["mmd"] < 2e-3


def test_untrained_model_fails_the_same_bar():
    """The bar can fail: an untrained model's samples are far from the data."""
    points = D.sample(D.MLPDiffusion(100), 10_000, seed=0, backend="eager")
    assert D.quality_report(points, "s_curve", seed=0)["swd"] > 0.05
