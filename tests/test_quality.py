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


# The bundled students of `best` (docs/distillation.md) against the bars: 4 steps better than every
# 10-step solver measured on the seed model (2.07e-3 and up), 2 steps better than the 5-step tuned grids
# (2.70e-3), 1 step better than the original 100-step sampler (3.61e-3).
STUDENT_BARS = [("distill-4", 4, 2.0e-3), ("distill-2", 2, 3.0e-3), ("distill-1", 1, 3.61e-3)]


@pytest.mark.cpu_paths  # the figures are float32 on torch's CPU kernels: CI checks them on another MKL path too
@pytest.mark.parametrize("name,steps,bar", STUDENT_BARS)
def test_bundled_students_meet_their_bars(name, steps, bar):
    student, schedule = D.load_pretrained(name)
    assert len(student.student_plan["timesteps"]) == steps
    assert median_swd(student, schedule) <= bar  # sample()'s default: the student's own plan


@pytest.mark.parametrize("name,steps,bar", STUDENT_BARS)
def test_student_bars_can_fail(name, steps, bar):
    """The same bar fails for the undistilled teacher on the student's own K-step plan."""
    teacher, schedule = D.load_pretrained("best")
    student, _ = D.load_pretrained(name)
    plan = student.student_plan
    assert median_swd(teacher, schedule, sampler=plan["sampler"], grid=plan["timesteps"], prior=plan["prior"]) > bar
