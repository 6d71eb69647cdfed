"""Regression metrics against closed forms (S = 1), slow loops, quadrature and grids."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate
from scipy.stats import norm
from sklearn.metrics import root_mean_squared_error

from uqbench.metrics import (
    COVERAGE_LEVELS,
    calibration_error,
    crps_loss,
    gaussian_nll_loss,
    interval_coverage,
    interval_width,
    miscalibration_area,
    mixture_cdf,
    mixture_nll_loss,
    mixture_quantile,
    picp,
    rmse_error,
    sharpness,
)


def _mixture(rng, s, n, d, *, equal_scale=False, spread=1.0):
    loc = rng.normal(size=(1, n, d)) + spread * rng.normal(size=(s, n, d))
    if equal_scale:
        scale = np.broadcast_to(rng.uniform(0.2, 1.5, size=(1, n, d)), (s, n, d)).copy()
    else:
        scale = rng.uniform(0.05, 1.5, size=(s, n, d))
    y = rng.normal(size=(n, d)) * 1.5
    return loc, scale, y


def _cdf(loc, scale, x):
    """Mixture CDF of one (point, output) at scalar x."""
    return np.mean(norm.cdf(x, loc, scale))


# ---- S = 1: closed forms -----------------------------------------------------------------


def test_single_gaussian_closed_forms():
    rng = np.random.default_rng(0)
    loc, scale, y = _mixture(rng, 1, 50, 2)
    logpdf = norm.logpdf(y, loc[0], scale[0])
    assert mixture_nll_loss(loc, scale, y) == pytest.approx(-logpdf.mean(), rel=1e-12)
    assert gaussian_nll_loss(loc, scale, y) == pytest.approx(-logpdf.mean(), rel=1e-12)
    # Gneiting & Raftery (2007): CRPS(N(m, s^2), y) = s [z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)].
    z = (y - loc[0]) / scale[0]
    crps = scale[0] * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / math.sqrt(math.pi))
    assert crps_loss(loc, scale, y) == pytest.approx(crps.mean(), rel=1e-10)
    per_output = root_mean_squared_error(y, loc[0], multioutput="raw_values")
    assert rmse_error(loc, y) == pytest.approx(np.sqrt(np.mean(per_output**2)), rel=1e-12)
    assert sharpness(loc, scale) == pytest.approx(np.sqrt(np.mean(scale**2)), rel=1e-12)
    # Gaussian central interval: mean +- z_{0.975} sigma.
    width = 2 * norm.ppf(0.975) * scale[0]
    assert interval_width(loc, scale) == pytest.approx(width.mean(), rel=1e-9)
    inside = np.abs(z) <= norm.ppf(0.975)
    assert picp(loc, scale, y) == pytest.approx(inside.mean())


# ---- mixtures ------------------------------------------------------------------------------


@pytest.mark.parametrize(("s", "equal_scale"), [(2, False), (5, True), (9, False)])
def test_mixture_nll_against_loop(s, equal_scale):
    rng = np.random.default_rng(s)
    loc, scale, y = _mixture(rng, s, 12, 2, equal_scale=equal_scale)
    expected = np.mean(
        [
            -np.log(np.mean(norm.pdf(y[n, d], loc[:, n, d], scale[:, n, d])))
            for n in range(12)
            for d in range(2)
        ]
    )
    assert mixture_nll_loss(loc, scale, y) == pytest.approx(expected, rel=1e-10)


def test_mixture_nll_far_from_every_component_is_finite():
    loc = np.array([[[0.0]], [[1.0]]])
    scale = np.full_like(loc, 0.01)
    y = np.array([[60.0]])  # density underflows to 0 in a naive computation
    z = (60.0 - 1.0) / 0.01
    expected = 0.5 * z**2 + math.log(0.01) + 0.5 * math.log(2 * math.pi) + math.log(2.0)
    assert mixture_nll_loss(loc, scale, y) == pytest.approx(expected, rel=1e-6)


def test_gaussian_nll_is_moment_matched():
    rng = np.random.default_rng(1)
    loc, scale, y = _mixture(rng, 6, 20, 1)
    # E[X] and E[X^2] - E[X]^2 of the mixture, written from the second moment.
    mean = loc.mean(axis=0)
    var = np.mean(scale**2 + loc**2, axis=0) - mean**2
    expected = -norm.logpdf(y, mean, np.sqrt(var)).mean()
    assert gaussian_nll_loss(loc, scale, y) == pytest.approx(expected, rel=1e-9)
    assert gaussian_nll_loss(loc, scale, y) != pytest.approx(mixture_nll_loss(loc, scale, y))


def _crps_quad(loc, scale, y):
    def below(x):
        return _cdf(loc, scale, x) ** 2

    def above(x):
        return (1.0 - _cdf(loc, scale, x)) ** 2

    lo = min(np.min(loc - 12 * scale), y - 1.0)
    hi = max(np.max(loc + 12 * scale), y + 1.0)
    kw = {"limit": 200, "epsabs": 1e-12, "epsrel": 1e-10}
    left = integrate.quad(below, lo, y, points=[m for m in loc if lo < m < y] or None, **kw)[0]
    right = integrate.quad(above, y, hi, points=[m for m in loc if y < m < hi] or None, **kw)[0]
    return left + right


@pytest.mark.parametrize(
    ("s", "equal_scale", "spread"), [(2, False, 1.0), (3, True, 2.0), (6, False, 0.3), (4, True, 0.05)]
)
def test_mixture_crps_against_quadrature(s, equal_scale, spread):
    rng = np.random.default_rng(10 + s)
    loc, scale, y = _mixture(rng, s, 3, 2, equal_scale=equal_scale, spread=spread)
    expected = np.mean(
        [_crps_quad(loc[:, n, d], scale[:, n, d], y[n, d]) for n in range(3) for d in range(2)]
    )
    assert crps_loss(loc, scale, y) == pytest.approx(expected, rel=1e-8)


def test_crps_with_repeated_draws_equals_weighted_mixture():
    rng = np.random.default_rng(4)
    loc, scale, y = _mixture(rng, 3, 3, 1)
    repeat = [0, 0, 0, 1, 2, 2]  # weights 1/2, 1/6, 1/3
    expected = np.mean(
        [_crps_quad(loc[repeat, n, 0], scale[repeat, n, 0], y[n, 0]) for n in range(3)]
    )
    assert crps_loss(loc[repeat], scale[repeat], y) == pytest.approx(expected, rel=1e-8)


def test_point_masses():
    # Scale-0 draws: every metric stays finite and CRPS matches the empirical-CRPS formula.
    rng = np.random.default_rng(5)
    loc = rng.normal(size=(7, 30, 1))
    scale = np.zeros_like(loc)
    y = rng.normal(size=(30, 1))
    x = loc[:, :, 0]
    e_xy = np.abs(x - y[:, 0]).mean(axis=0)
    e_xx = np.abs(x[:, None] - x[None]).mean(axis=(0, 1))
    assert crps_loss(loc, scale, y) == pytest.approx(np.mean(e_xy - 0.5 * e_xx), abs=1e-5)
    for value in (
        mixture_nll_loss(loc, scale, y),
        gaussian_nll_loss(loc, scale, y),
        interval_width(loc, scale),
        calibration_error(loc, scale, y),
    ):
        assert np.isfinite(value)
    # A target exactly on one of the atoms gets the floored density of that atom.
    y_on = loc[3]
    assert mixture_nll_loss(loc, scale, y_on) == pytest.approx(
        math.log(7) + math.log(1e-6) + 0.5 * math.log(2 * math.pi), rel=1e-6
    )
    # A deterministic point prediction with scale 0 gets variance floor 1e-12.
    assert gaussian_nll_loss(loc[:1], scale[:1], loc[0] + 1.0) == pytest.approx(
        0.5 * (math.log(2 * math.pi * 1e-12) + 1e12), rel=1e-9
    )


def _grid_quantiles(loc, scale, probs):
    """Quantiles of one (point, output) mixture: invert its CDF on a grid, then on a finer
    grid around each coarse answer."""
    grid = np.linspace(np.min(loc - 9 * scale), np.max(loc + 9 * scale), 5001)
    step = grid[1] - grid[0]
    cdf = norm.cdf(grid[None], loc[:, None], scale[:, None]).mean(axis=0)
    coarse = np.interp(probs, cdf, grid)
    fine = coarse[:, None] + np.linspace(-2 * step, 2 * step, 801)[None]  # [K, 801]
    fine_cdf = norm.cdf(fine[None], loc[:, None, None], scale[:, None, None]).mean(axis=0)
    return np.array([np.interp(p, c, x) for p, c, x in zip(probs, fine_cdf, fine, strict=True)])


def test_quantiles_against_grid():
    rng = np.random.default_rng(6)
    loc, scale, _ = _mixture(rng, 5, 6, 2, spread=2.0)
    probs = np.array([0.01, 0.025, 0.3, 0.5, 0.975])
    q = mixture_quantile(loc, scale, probs)
    assert q.shape == (5, 6, 2)
    for n in range(6):
        for d in range(2):
            expected = _grid_quantiles(loc[:, n, d], scale[:, n, d], probs)
            np.testing.assert_allclose(q[:, n, d], expected, atol=1e-7)
    np.testing.assert_allclose(mixture_cdf(loc, scale, q[1]), 0.025, atol=1e-12)
    assert mixture_quantile(loc, scale, 0.5).shape == (6, 2)


def test_bimodal_quantile_is_not_a_gaussian_fit():
    loc = np.array([[[-5.0]], [[5.0]]])
    scale = np.full_like(loc, 0.5)
    # The median of a symmetric bimodal mixture is 0; the 25% quantile is the left mode.
    assert mixture_quantile(loc, scale, 0.5)[0, 0] == pytest.approx(0.0, abs=1e-9)
    assert mixture_quantile(loc, scale, 0.25)[0, 0] == pytest.approx(-5.0, abs=1e-6)


def test_coverage_against_grid_quantiles():
    rng = np.random.default_rng(7)
    n = 60
    loc, scale, y = _mixture(rng, 4, n, 1, spread=1.5)
    y = loc.mean(axis=0) + rng.normal(size=(n, 1)) * 1.2
    lows, highs = (1 - COVERAGE_LEVELS) / 2, (1 + COVERAGE_LEVELS) / 2
    inside = np.zeros((n, len(COVERAGE_LEVELS)))
    for i in range(n):
        q = _grid_quantiles(loc[:, i, 0], scale[:, i, 0], np.concatenate([lows, highs]))
        inside[i] = (q[: len(lows)] <= y[i, 0]) & (y[i, 0] <= q[len(lows) :])
    expected = inside.mean(axis=0)
    observed = interval_coverage(loc, scale, y)
    np.testing.assert_array_equal(observed, expected)
    assert picp(loc, scale, y) == expected[-1]
    gap = np.abs(expected - COVERAGE_LEVELS)
    assert calibration_error(loc, scale, y) == pytest.approx(gap.mean(), abs=1e-15)
    widths = [
        np.diff(_grid_quantiles(loc[:, i, 0], scale[:, i, 0], np.array([0.025, 0.975])))[0]
        for i in range(n)
    ]
    assert interval_width(loc, scale) == pytest.approx(np.mean(widths), abs=1e-7)


def test_coverage_against_monte_carlo():
    # A well-specified model: targets drawn from the predictive mixture itself.
    rng = np.random.default_rng(8)
    n = 4000
    loc, scale, _ = _mixture(rng, 3, n, 1, spread=1.0)
    pick = rng.integers(0, 3, n)
    y = (loc[pick, np.arange(n), 0] + scale[pick, np.arange(n), 0] * rng.normal(size=n))[:, None]
    coverage = interval_coverage(loc, scale, y)
    # Binomial standard error at n = 4000 is <= 0.008.
    np.testing.assert_allclose(coverage, COVERAGE_LEVELS, atol=0.03)
    assert calibration_error(loc, scale, y) < 0.02


def test_miscalibration_area_against_integration():
    rng = np.random.default_rng(9)
    n = 200
    loc, scale, _ = _mixture(rng, 3, n, 1, spread=0.5)
    # Heavy-tailed residuals: 60% close to the centre, 40% far out, so the curve is above
    # the diagonal at low levels and below it at high ones.
    far = rng.random(n) < 0.4
    offset = np.where(far, 8.0, 0.01) * rng.choice([-1.0, 1.0], n)
    y = np.median(loc, axis=0) + offset[:, None]
    cov = interval_coverage(loc, scale, y)
    assert np.any(cov > COVERAGE_LEVELS) and np.any(cov < COVERAGE_LEVELS)
    x = np.linspace(0.0, 1.0, 2_000_001)
    knots_x = np.concatenate([[0.0], COVERAGE_LEVELS, [1.0]])
    curve = np.interp(x, knots_x, np.concatenate([[0.0], cov, [1.0]]))
    expected = np.trapezoid(np.abs(curve - x), x)
    assert miscalibration_area(loc, scale, y) == pytest.approx(expected, abs=1e-9)


def test_miscalibration_area_of_a_known_curve():
    # Coverage 0 at every level: the area between y = 0 ... and the diagonal.
    loc = np.zeros((1, 10, 1))
    scale = np.full_like(loc, 0.1)
    y = np.full((10, 1), 100.0)
    levels = COVERAGE_LEVELS
    x = np.concatenate([[0.0], levels, [1.0]])
    d = np.concatenate([[0.0], -levels, [0.0]])
    expected = np.sum(np.diff(x) * (np.abs(d[:-1]) + np.abs(d[1:])) / 2)
    assert miscalibration_area(loc, scale, y) == pytest.approx(expected, abs=1e-12)
    assert calibration_error(loc, scale, y) == pytest.approx(levels.mean())


def test_sharpness_is_root_mean_mixture_variance():
    rng = np.random.default_rng(11)
    loc, scale, _ = _mixture(rng, 8, 30, 3)
    second = np.mean(scale**2 + loc**2, axis=0)
    var = second - loc.mean(axis=0) ** 2
    assert sharpness(loc, scale) == pytest.approx(np.sqrt(var.mean()), rel=1e-10)


@st.composite
def mixtures(draw):
    s = draw(st.integers(1, 6))
    n = draw(st.integers(1, 12))
    d = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    loc, scale, y = _mixture(
        rng, s, n, d, equal_scale=draw(st.booleans()), spread=draw(st.sampled_from([0.0, 0.1, 2.0]))
    )
    if draw(st.booleans()):
        scale[rng.random(scale.shape) < 0.3] = 0.0
    return loc, scale, y


@settings(max_examples=30, deadline=None)
@given(mixtures())
def test_regression_invariants(data):
    loc, scale, y = data
    coverage = interval_coverage(loc, scale, y)
    assert np.all(np.diff(coverage) >= 0)
    assert np.all((coverage >= 0) & (coverage <= 1))
    crps = crps_loss(loc, scale, y)
    e_xy = np.mean(np.abs(loc - y))  # CRPS <= E|X - y| <= mean |loc - y| + mean scale
    assert 0 <= crps <= e_xy + np.mean(np.maximum(scale, 1e-6)) + 1e-12
    assert 0 <= calibration_error(loc, scale, y) <= 1
    assert 0 <= miscalibration_area(loc, scale, y) <= 0.5
    assert np.isfinite(mixture_nll_loss(loc, scale, y))
    assert interval_width(loc, scale) >= 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scale": -np.ones((2, 3, 1))}, "scale must be >= 0"),
        ({"scale": np.ones((2, 3, 2))}, "differ in shape"),
        ({"y": np.ones((3,))}, "2 dimensions"),
        ({"y": np.ones((4, 1))}, r"expected \[N, D\]"),
        ({"loc": np.full((2, 3, 1), np.inf)}, "finite"),
        ({"min_scale": 0.0}, "got 0.0"),
    ],
)
def test_invalid_input(kwargs, match):
    args = {"loc": np.zeros((2, 3, 1)), "scale": np.ones((2, 3, 1)), "y": np.zeros((3, 1))}
    min_scale = kwargs.pop("min_scale", 1e-6)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        crps_loss(args["loc"], args["scale"], args["y"], min_scale=min_scale)


def test_invalid_levels_and_probabilities():
    loc, scale, y = np.zeros((2, 3, 1)), np.ones((2, 3, 1)), np.zeros((3, 1))
    with pytest.raises(ValueError, match=r"\[0.5, 0.2\]"):
        interval_coverage(loc, scale, y, levels=[0.5, 0.2])
    with pytest.raises(ValueError, match=r"1\.5"):
        mixture_quantile(loc, scale, 1.5)
    with pytest.raises(ValueError, match=r"got 1\.0"):
        picp(loc, scale, y, level=1.0)


def test_crps_mixed_equal_and_unequal_scale_outputs():
    # Output 0 has one scale for all draws (equal-scale path), output 1 does not.
    rng = np.random.default_rng(12)
    loc, scale, y = _mixture(rng, 4, 3, 2, spread=0.8)
    scale[:, :, 0] = scale[0, :, 0]
    expected = np.mean(
        [_crps_quad(loc[:, n, d], scale[:, n, d], y[n, d]) for n in range(3) for d in range(2)]
    )
    assert crps_loss(loc, scale, y) == pytest.approx(expected, rel=1e-8)


def test_blocking_does_not_change_results(monkeypatch):
    import uqbench.metrics._bootstrap as bootstrap_module
    import uqbench.metrics._regression as regression_module
    from uqbench.interface import RegressionSamples
    from uqbench.metrics import evaluate

    rng = np.random.default_rng(13)
    loc, scale, y = _mixture(rng, 30, 40, 2, spread=0.5)
    scale[:, :20] = scale[:1, :20]
    samples = RegressionSamples(loc, scale)
    reference = evaluate(samples, y, seed=0, n_bootstrap=25)
    monkeypatch.setattr(regression_module, "_BLOCK_ELEMENTS", 64)
    monkeypatch.setattr(bootstrap_module, "_CHUNK_ELEMENTS", 100)
    blocked = evaluate(samples, y, seed=0, n_bootstrap=25)
    for a, b in zip(reference, blocked, strict=True):
        assert a.name == b.name
        assert a.value == pytest.approx(b.value, rel=1e-12, abs=1e-15), a.name
        assert a.ci_low == pytest.approx(b.ci_low, rel=1e-12, abs=1e-15), a.name
        assert a.ci_high == pytest.approx(b.ci_high, rel=1e-12, abs=1e-15), a.name
