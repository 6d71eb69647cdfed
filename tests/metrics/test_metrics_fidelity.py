"""Posterior-fidelity metrics against closed forms, quadrature and scipy's sample W1."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import ndtr
from scipy.stats import norm, wasserstein_distance

from uqbench.metrics import (
    epistemic_sd_ratio,
    normal_atoms,
    predictive_sd,
    predictive_sd_ratio,
    predictive_wasserstein,
)


def _mixture(rng, s, n, d=1, *, spread=1.0, lo=0.05, hi=1.5):
    loc = rng.normal(size=(1, n, d)) + spread * rng.normal(size=(s, n, d))
    return loc, rng.uniform(lo, hi, size=(s, n, d))


def _quadrature_w1(la, sa, lb, sb, n_grid=20_001):
    """``int |F_a - F_b| dt`` per input by the trapezoid rule on a fine grid (D = 1)."""
    out = []
    for n in range(la.shape[1]):
        a, b = (la[:, n, 0], sa[:, n, 0]), (lb[:, n, 0], sb[:, n, 0])
        lo = min((a[0] - 10 * a[1]).min(), (b[0] - 10 * b[1]).min())
        hi = max((a[0] + 10 * a[1]).max(), (b[0] + 10 * b[1]).max())
        t = np.linspace(lo, hi, n_grid)
        fa = ndtr((t - a[0][:, None]) / a[1][:, None]).mean(axis=0)
        fb = ndtr((t - b[0][:, None]) / b[1][:, None]).mean(axis=0)
        out.append(np.trapezoid(np.abs(fa - fb), t))
    return np.array(out)


@functools.cache
def _atom_error_bound(n_atoms):
    """``W1(N(0,1), its atoms)`` by midpoint quadrature in probability."""
    u = (np.arange(200_000) + 0.5) / 200_000
    z = normal_atoms(n_atoms)
    return float(np.mean(np.abs(norm.ppf(u) - z[np.minimum((u * n_atoms).astype(int), n_atoms - 1)])))


# ---- normal_atoms -------------------------------------------------------------------


@pytest.mark.parametrize("n_atoms", [1, 2, 5, 32])
def test_normal_atoms_are_stratum_means(n_atoms):
    z = normal_atoms(n_atoms)
    assert z.shape == (n_atoms,)
    np.testing.assert_allclose(z, -z[::-1], atol=0)
    assert abs(z.mean()) < 1e-15 and np.all(np.diff(z) > 0)
    edges = norm.ppf(np.linspace(0, 1, n_atoms + 1))
    assert np.all((z > edges[:-1]) & (z < edges[1:]))
    # E[Z^2] = 1 = within-stratum variance + variance of the stratum means.
    assert np.mean(z**2) < 1.0
    for j in range(n_atoms):  # the conditional mean by quadrature
        lo, hi = edges[j], edges[j + 1]
        t = np.linspace(max(lo, -12), min(hi, 12), 50_001)
        expected = np.trapezoid(t * norm.pdf(t), t) * n_atoms
        assert z[j] == pytest.approx(expected, abs=1e-6)


def test_normal_atoms_rejects_bad_count():
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="n_atoms"):
            normal_atoms(bad)


# ---- predictive_wasserstein: closed forms ---------------------------------------------


def test_single_gaussians_equal_scale_is_mean_difference():
    rng = np.random.default_rng(0)
    la, lb = rng.normal(size=(1, 50, 1)) * 3, rng.normal(size=(1, 50, 1)) * 3
    s = rng.uniform(0.1, 2.0, size=(1, 50, 1))
    w = predictive_wasserstein(la, s, lb, s)
    np.testing.assert_allclose(w, np.abs(la - lb)[0, :, 0], rtol=1e-12, atol=1e-12)


def test_single_gaussians_equal_mean_is_scale_difference_times_mean_abs_normal():
    rng = np.random.default_rng(1)
    mu = rng.normal(size=(1, 30, 1))
    sa, sb = rng.uniform(0.1, 2, size=(1, 30, 1)), rng.uniform(0.1, 2, size=(1, 30, 1))
    w = predictive_wasserstein(mu, sa, mu, sb)
    np.testing.assert_allclose(w, np.abs(sa - sb)[0, :, 0] * math.sqrt(2 / math.pi), rtol=1e-12)


def test_single_gaussians_general_close_to_closed_form():
    # W1(N(m1, s1^2), N(m2, s2^2)) = E|dm + ds Z| (the monotone coupling pairs quantiles).
    dm, ds = 0.7, -0.9
    expected = dm * (1 - 2 * norm.cdf(-dm / abs(ds))) + 2 * abs(ds) * norm.pdf(dm / ds)
    w = predictive_wasserstein(
        np.array([[[dm]]]), np.array([[[1.0 + ds]]]), np.zeros((1, 1, 1)), np.ones((1, 1, 1))
    )
    assert w[0] == pytest.approx(expected, abs=_atom_error_bound(32) * 2.1)
    assert w[0] == pytest.approx(expected, rel=2e-3)


@pytest.mark.parametrize(("s_a", "s_b"), [(7, 7), (5, 8), (1, 4)])
def test_point_masses_equal_scipy_empirical_w1(s_a, s_b):
    rng = np.random.default_rng(2)
    la, lb = rng.normal(size=(s_a, 20, 1)), rng.normal(size=(s_b, 20, 1)) + 0.3
    w = predictive_wasserstein(la, np.zeros_like(la), lb, np.zeros_like(lb))
    expected = [wasserstein_distance(la[:, n, 0], lb[:, n, 0]) for n in range(20)]
    np.testing.assert_allclose(w, expected, rtol=1e-12, atol=1e-14)


def test_point_mass_vs_gaussian():
    # W1(delta_m, N(m, s^2)) = E|s Z| = s sqrt(2 / pi).
    w = predictive_wasserstein(np.zeros((1, 1, 1)), np.zeros((1, 1, 1)), np.zeros((1, 1, 1)), np.full((1, 1, 1), 2.0))
    assert w[0] == pytest.approx(2 * math.sqrt(2 / math.pi), rel=1e-12)


# ---- predictive_wasserstein: mixtures vs independent references -------------------------


@pytest.mark.parametrize(("s_a", "s_b", "spread_b"), [(20, 20, 0.3), (10, 30, 1.0), (50, 5, 2.0)])
def test_mixtures_match_quadrature_of_cdfs(s_a, s_b, spread_b):
    rng = np.random.default_rng(3)
    la, sa = _mixture(rng, s_a, 8)
    lb, sb = _mixture(rng, s_b, 8, spread=spread_b, lo=0.1, hi=0.6)
    w = predictive_wasserstein(la, sa, lb, sb)
    ref = _quadrature_w1(la, sa, lb, sb)
    # The rigorous bound (triangle inequality through the atoms) ...
    bound = _atom_error_bound(32) * (sa.mean(axis=0) + sb.mean(axis=0))[:, 0]
    assert np.all(np.abs(w - ref) <= bound)
    # ... and the accuracy actually reached.
    np.testing.assert_allclose(w, ref, rtol=5e-3, atol=1e-3)
    # More atoms, closer.
    w128 = predictive_wasserstein(la, sa, lb, sb, n_atoms=128)
    np.testing.assert_allclose(w128, ref, rtol=2e-3, atol=3e-4)


def test_mixtures_match_scipy_on_large_samples():
    rng = np.random.default_rng(4)
    la, sa = _mixture(rng, 15, 3)
    lb, sb = _mixture(rng, 25, 3, spread=0.5)
    w = predictive_wasserstein(la, sa, lb, sb)
    n = 200_000
    for i in range(3):
        ka, kb = rng.integers(0, 15, n), rng.integers(0, 25, n)
        xa = la[ka, i, 0] + sa[ka, i, 0] * rng.standard_normal(n)
        xb = lb[kb, i, 0] + sb[kb, i, 0] * rng.standard_normal(n)
        # Monte Carlo error of the empirical W1 at n = 2e5 is a few 1e-3 here.
        assert w[i] == pytest.approx(wasserstein_distance(xa, xb), abs=0.015)


def test_multi_output_is_mean_of_marginals():
    rng = np.random.default_rng(5)
    la, sa = _mixture(rng, 6, 10, 3)
    lb, sb = _mixture(rng, 9, 10, 3)
    w = predictive_wasserstein(la, sa, lb, sb)
    per = [predictive_wasserstein(la[..., [d]], sa[..., [d]], lb[..., [d]], sb[..., [d]]) for d in range(3)]
    np.testing.assert_allclose(w, np.mean(per, axis=0), rtol=1e-12)


def test_blocks_do_not_change_the_result(monkeypatch):
    from uqbench.metrics import _fidelity

    rng = np.random.default_rng(6)
    la, sa = _mixture(rng, 8, 40)
    lb, sb = _mixture(rng, 11, 40)
    full = predictive_wasserstein(la, sa, lb, sb)
    monkeypatch.setattr(_fidelity, "_BLOCK_ELEMENTS", 1)  # one input per block
    np.testing.assert_allclose(predictive_wasserstein(la, sa, lb, sb), full, rtol=1e-13)


# ---- predictive_wasserstein: properties ------------------------------------------------

_draws = st.integers(1, 6)
_seeds = st.integers(0, 2**31 - 1)


def _random(seed, s, n, d):
    rng = np.random.default_rng(seed)
    loc = rng.normal(size=(s, n, d)) * rng.uniform(0.01, 5)
    scale = rng.uniform(0, 2, size=(s, n, d)) * (rng.uniform(size=(s, n, d)) > 0.2)  # some point masses
    return loc, scale


@settings(max_examples=60, deadline=None)
@given(_seeds, _draws, _draws, _draws, st.integers(1, 5), st.integers(1, 2), st.integers(1, 12))
def test_w1_is_a_metric_between_discretised_predictives(seed, s_a, s_b, s_c, n, d, n_atoms):
    a = _random(seed, s_a, n, d)
    b = _random(seed + 1, s_b, n, d)
    c = _random(seed + 2, s_c, n, d)
    ab = predictive_wasserstein(*a, *b, n_atoms=n_atoms)
    ba = predictive_wasserstein(*b, *a, n_atoms=n_atoms)
    assert ab.shape == (n,)
    assert np.all(ab >= 0)
    np.testing.assert_allclose(ab, ba, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(predictive_wasserstein(*a, *a, n_atoms=n_atoms), 0.0)
    ac = predictive_wasserstein(*a, *c, n_atoms=n_atoms)
    cb = predictive_wasserstein(*c, *b, n_atoms=n_atoms)
    assert np.all(ab <= ac + cb + 1e-9 * (1 + ac + cb))


@settings(max_examples=40, deadline=None)
@given(_seeds, _draws, _draws, st.floats(-50, 50), st.floats(0.01, 100))
def test_w1_shift_and_scale(seed, s_a, s_b, shift, factor):
    la, sa = _random(seed, s_a, 3, 1)
    lb, sb = _random(seed + 1, s_b, 3, 1)
    # Shifting one predictive by c when it is the other's copy: W1 = |c|.
    np.testing.assert_allclose(predictive_wasserstein(la, sa, la + shift, sa), abs(shift), rtol=1e-9, atol=1e-9)
    # W1 scales with the units.
    base = predictive_wasserstein(la, sa, lb, sb)
    scaled = predictive_wasserstein(la * factor, sa * factor, lb * factor, sb * factor)
    np.testing.assert_allclose(scaled, base * factor, rtol=1e-9, atol=1e-12)
    # Shifting both changes nothing.
    moved = predictive_wasserstein(la + shift, sa, lb + shift, sb)
    np.testing.assert_allclose(moved, base, rtol=1e-6, atol=1e-9 * (1 + abs(shift)))


def test_w1_reorders_draws_freely():
    rng = np.random.default_rng(7)
    la, sa = _mixture(rng, 10, 5)
    lb, sb = _mixture(rng, 10, 5)
    perm = rng.permutation(10)
    np.testing.assert_allclose(
        predictive_wasserstein(la[perm], sa[perm], lb, sb), predictive_wasserstein(la, sa, lb, sb), rtol=1e-12
    )


_Z, _O = np.zeros((2, 4, 1)), np.ones((2, 4, 1))


@pytest.mark.parametrize(
    ("args", "n_atoms", "match"),
    [
        ((_Z, _O, np.zeros((3, 5, 1)), np.ones((3, 5, 1))), 32, r"same \[N, D\]"),
        ((_Z, -_O, _Z, _O), 32, "scale must be >= 0"),
        ((_Z, _O, np.full((2, 4, 1), np.nan), _O), 32, "finite"),
        ((np.zeros((2, 4)), np.ones((2, 4)), _Z, _O), 32, "3 dimensions"),
        ((_Z, np.ones((2, 4, 2)), _Z, _O), 32, "differ in shape"),
        ((_Z, _O, _Z, _O), 0, "n_atoms"),
    ],
)
def test_w1_validates(args, n_atoms, match):
    with pytest.raises(ValueError, match=match):
        predictive_wasserstein(*args, n_atoms=n_atoms)


# ---- sd ratios --------------------------------------------------------------------------


def test_epistemic_sd_ratio_matches_direct_computation():
    rng = np.random.default_rng(8)
    la, lr = rng.normal(size=(10, 7, 2)) * 0.5, rng.normal(size=(30, 7, 2)) + 3.0
    expected = np.sqrt(la.var(axis=0).sum(axis=1)) / np.sqrt(lr.var(axis=0).sum(axis=1))
    np.testing.assert_allclose(epistemic_sd_ratio(la, lr), expected, rtol=1e-12)
    np.testing.assert_allclose(epistemic_sd_ratio(3 * la, lr), 3 * expected, rtol=1e-12)
    np.testing.assert_allclose(epistemic_sd_ratio(lr, lr), 1.0, rtol=1e-12)


def test_epistemic_sd_ratio_deterministic_method_is_zero_and_flat_reference_is_nan():
    rng = np.random.default_rng(9)
    la = rng.normal(size=(5, 4, 1))
    lr = rng.normal(size=(6, 4, 1))
    lr[:, 1] = 2.5  # no spread at input 1
    lr[:, 2] = 1e3 + 1e-7 * rng.normal(size=(6, 1))  # float32-level rounding spread only
    det = np.broadcast_to(la[:1], la.shape)
    r = epistemic_sd_ratio(det, lr)
    assert r[0] == 0.0 and r[3] == 0.0
    assert np.isnan(r[1]) and np.isnan(r[2])
    assert np.isnan(epistemic_sd_ratio(la, lr)[1])
    # rtol sets the guard: with a tinier one, the rounding spread counts.
    assert np.isfinite(epistemic_sd_ratio(la, lr, rtol=1e-15)[2])
    with pytest.raises(ValueError, match="rtol"):
        epistemic_sd_ratio(la, lr, rtol=0)


def test_predictive_sd_ratio_matches_law_of_total_variance():
    rng = np.random.default_rng(10)
    la, sa = _mixture(rng, 8, 6, 2)
    lr, sr = _mixture(rng, 12, 6, 2)
    total = lambda loc, scale: np.sqrt((np.mean(scale**2, axis=0) + loc.var(axis=0)).sum(axis=1))  # noqa: E731
    np.testing.assert_allclose(predictive_sd(la, sa), total(la, sa), rtol=1e-12)
    np.testing.assert_allclose(predictive_sd_ratio(la, sa, lr, sr), total(la, sa) / total(lr, sr), rtol=1e-12)
    np.testing.assert_allclose(predictive_sd_ratio(lr, sr, lr, sr), 1.0, rtol=1e-12)
    # A single draw: the total sd is its scale.
    np.testing.assert_allclose(predictive_sd(la[:1, :, :1], sa[:1, :, :1]), sa[0, :, 0], rtol=1e-12)
