"""Shared statistics helpers on cases with known answers."""
import math

import numpy as np
import pytest
from scipy import stats as st

from interference.metrics.stats import auroc, bootstrap_ci, mean_ci, spearman, spearman_ci


def test_mean_ci_matches_t_interval():
    x = [0.1, 0.3, 0.2, 0.4]
    e = mean_ci(x)
    lo, hi = st.t.interval(0.95, 3, loc=np.mean(x), scale=st.sem(x))
    assert e.value == pytest.approx(0.25) and e.low == pytest.approx(lo) and e.high == pytest.approx(hi)
    assert e.n == 4


def test_mean_ci_single_value_is_unbounded():
    e = mean_ci([0.5])
    assert e.value == 0.5 and e.low == -math.inf and e.high == math.inf


def test_empty_input_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        mean_ci([])


def test_spearman_matches_scipy_and_handles_ties_and_constants():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, 50).astype(float)
    y = x + rng.normal(size=50)
    assert spearman(x, y) == pytest.approx(st.spearmanr(x, y).statistic)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_spearman_ci_contains_point_and_is_deterministic():
    rng = np.random.default_rng(1)
    x = rng.normal(size=200)
    y = x + rng.normal(size=200)
    a, b = spearman_ci(x, y, n_boot=200, seed=3), spearman_ci(x, y, n_boot=200, seed=3)
    assert a == b
    assert a.low < a.value < a.high and a.low > 0


def test_bootstrap_ci_of_mean_is_near_normal_interval():
    rng = np.random.default_rng(2)
    x = rng.normal(size=400)
    e = bootstrap_ci(x, np.mean, n_boot=1000, seed=0)
    half = 1.96 * x.std(ddof=1) / math.sqrt(400)
    assert e.high - e.low == pytest.approx(2 * half, rel=0.15)


def test_auroc_known_values():
    assert auroc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert auroc([0.5, 0.5], [0, 1]) == 0.5
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75  # sklearn's documented example
    assert math.isnan(auroc([1, 2], [1, 1]))


def test_ols_slope_on_a_known_line():
    from interference.metrics.stats import ols_slope
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    # y = 3x + 1: the slope per standard deviation of x is 3 * std(x) = 3 * sqrt(2)
    assert ols_slope(x, 3 * x + 1) == pytest.approx(3 * np.sqrt(2))
    assert ols_slope(10 * x, 3 * x + 1) == pytest.approx(3 * np.sqrt(2))  # scale-free in x
    assert ols_slope(x, -x) == pytest.approx(-np.sqrt(2))
    assert ols_slope([1, 2, np.nan, 3], [2, 4, 100, 6]) == pytest.approx(2 * np.sqrt(2 / 3))  # nan pair dropped
    assert np.isnan(ols_slope([1, 1, 1, 1], [1, 2, 3, 4]))  # constant x
    assert np.isnan(ols_slope([1, 2], [1, 2]))  # too few points
    with pytest.raises(ValueError, match="equal lengths"):
        ols_slope([1, 2, 3], [1, 2])
