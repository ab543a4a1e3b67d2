"""The bundled model's samples stay as good as the original recipe's (docs/training.md: how it was trained)."""
import pytest

import ddpm_fast as D
from ddpm_fast.sweep import median_swd  # the bar's measure: median SWD of 3 draws of 10,000 points


def test_bundled_model_sample_quality():
    model, schedule = D.load_pretrained()
    points = D.sample(model, 10_000, schedule=schedule, seed=0, backend="eager")
    report = D.quality_report(points, "s_curve", seed=0)
    # The original code's own recipe reached SWD about 0.005 (issue 2); the data-vs-data floor
    # is the best any sampler can show at this N. Measured for the bundled model: see docs/samplers.md.
    assert report["swd"] < 0.005
    assert report["swd"] < 5 * report["swd_floor"]
    assert report["mmd"] < 2e-3


def test_untrained_model_fails_the_same_bar():
    """The bar can fail: an untrained model's samples are far from the data."""
    points = D.sample(D.MLPDiffusion(100), 10_000, seed=0, backend="eager")
    assert D.quality_report(points, "s_curve", seed=0)["swd"] > 0.05


# The 100-step ddpm measures 3.6e-3 here; the bars: 10 steps better than it, 5 steps
# better than every diffusers scheduler measured at 5 (4.5e-3 and up). Measured medians: docs/samplers.md.
@pytest.mark.parametrize("sampler", ["dpm++2m", "unipc"])
@pytest.mark.parametrize("steps,bar", [(10, 2.5e-3), (5, 4.0e-3)])
def test_few_step_samplers_beat_100_step_ddpm(sampler, steps, bar):
    model, schedule = D.load_pretrained()
    assert median_swd(model, schedule, sampler=sampler, steps=steps) <= bar


def test_few_step_bar_can_fail():
    """The same bar with the unit prior N(0, I): the solver carries the excess to x_0."""
    model, schedule = D.load_pretrained()
    assert median_swd(model, schedule, sampler="dpm++2m", steps=10, prior="unit") > 2.5e-3


def test_best_bundled_model_with_its_recommended_sampler():
    """load_pretrained("best") (ddpm-fast train --recipe best) under the issue's bar of 2.0e-3 with
    UniPC, 10 steps (measured 1.61e-3; docs/samplers.md), where the seed recipe's model with 100-step ddpm
    (3.6e-3) fails the same bar."""
    model, schedule = D.load_pretrained("best")
    assert median_swd(model, schedule, sampler="unipc", steps=10) <= 2.0e-3
    seed_model, _ = D.load_pretrained("seed")
    assert median_swd(seed_model, schedule) > 2.0e-3
