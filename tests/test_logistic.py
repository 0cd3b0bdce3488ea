"""The one logistic fit and its two scalings (``metrics.logistic``), on constructed columns."""
import numpy as np
import pytest
from scipy.stats import norm

from interference.metrics.logistic import Scaler, fit_logistic
from interference.metrics.stats import auroc


def test_normal_scores_rank_against_the_training_rows_only():
    train = np.array([[0.0], [1.0], [1.0], [5.0]])
    s = Scaler.fit(train, "normal")
    # mid-ranks 0.5, 2, 2, 3.5 of four rows -> ppf((r + 0.5) / 5); a test value sits where it would sort
    assert np.allclose(s(train)[:, 0], norm.ppf((np.array([0.5, 2, 2, 3.5]) + 0.5) / 5))
    assert np.allclose(s(np.array([[-9.0], [3.0], [99.0]]))[:, 0], norm.ppf(np.array([0.5, 3.5, 4.5]) / 5))
    assert np.array_equal(s(np.array([[1e6]])), s(np.array([[6.0]])))  # rank-based: scale-free beyond the last row


def test_z_scaling_leaves_a_constant_column_unscaled():
    train = np.array([[1.0, 7.0], [3.0, 7.0]])
    s = Scaler.fit(train, "z")
    assert np.allclose(s(train), [[-1.0, 0.0], [1.0, 0.0]]) and list(s.std) == [1.0, 1.0]
    with pytest.raises(ValueError, match="unknown scaling"):
        Scaler.fit(train, "minmax")


@pytest.mark.parametrize("scaling", ["normal", "z"])
def test_fit_ranks_held_out_rows_by_the_feature_that_separates_the_classes(scaling):
    rng = np.random.default_rng(0)
    y = np.arange(200) % 2 == 0
    x = np.stack([y + 0.3 * rng.standard_normal(200), rng.standard_normal(200)], 1)
    scaler, clf = fit_logistic(x[:100], y[:100], scaling, C=1.0, max_iter=1000, random_state=0)
    score = clf.decision_function(scaler(x[100:]))
    assert auroc(score, y[100:]) > 0.9  # the classes sit 1 apart with noise sd 0.3: AUROC ~0.99
    assert abs(clf.coef_[0, 0]) > 3 * abs(clf.coef_[0, 1])
