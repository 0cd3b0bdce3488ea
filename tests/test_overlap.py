"""Overlap, CKA, kNN, drift and probe readout on constructed representations."""
import numpy as np
import pytest
import torch

from interference.metrics.overlap import cosine_overlap, drift, knn_overlap, linear_cka, probe_readout


def _reference_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Naive HSIC form (Kornblith et al. 2019, eq. 3-4) with explicit n x n Gram matrices."""
    x, y = x.double(), y.double()
    n = x.shape[0]
    h = torch.eye(n, dtype=torch.float64) - 1.0 / n
    k, l = x @ x.T, y @ y.T
    hsic = lambda a, b: torch.trace(a @ h @ b @ h) / (n - 1) ** 2  # noqa: E731
    return float(hsic(k, l) / torch.sqrt(hsic(k, k) * hsic(l, l)))


def test_identical_sets_give_cosine_one_and_cka_one():
    x = torch.randn(50, 16)
    ov = cosine_overlap(x, x, k=1)
    assert torch.allclose(ov.max, torch.ones(50), atol=1e-5)
    assert torch.equal(ov.argmax, torch.arange(50))
    assert float(linear_cka(x, x)) == pytest.approx(1.0, abs=1e-6)


def test_orthogonal_sets_give_zero():
    x = torch.zeros(8, 16)
    y = torch.zeros(8, 16)
    x[:, :8] = torch.randn(8, 8)
    y[:, 8:] = torch.randn(8, 8)
    ov = cosine_overlap(x, y, k=3)
    assert torch.allclose(ov.max, torch.zeros(8), atol=1e-6)
    assert torch.allclose(ov.topk_mean, torch.zeros(8), atol=1e-6)
    # CKA compares item geometry, so its "orthogonal" case is uncorrelated features: centred
    # columns of x and y spanning orthogonal subspaces of item space.
    m = torch.randn(40, 12)
    q, _ = torch.linalg.qr(m - m.mean(0))
    assert float(linear_cka(q[:, :6], q[:, 6:])) == pytest.approx(0.0, abs=1e-6)


def test_topk_mean_by_hand():
    e = torch.tensor([[1.0, 0.0]])
    n = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # cosines 1, 0, 0.7071
    ov = cosine_overlap(e, n, k=2)
    assert float(ov.max[0]) == pytest.approx(1.0)
    assert float(ov.topk_mean[0]) == pytest.approx((1 + 2 ** -0.5) / 2)
    assert int(ov.argmax[0]) == 0


def test_cka_invariances_and_reference():
    torch.manual_seed(0)
    x = torch.randn(60, 10)
    y = x @ torch.randn(10, 7) + 0.5 * torch.randn(60, 7)
    q, _ = torch.linalg.qr(torch.randn(10, 10))
    ref = _reference_cka(x, y)
    assert float(linear_cka(x, y)) == pytest.approx(ref, abs=1e-5)
    assert float(linear_cka(x @ q, y)) == pytest.approx(ref, abs=1e-5)
    assert float(linear_cka(3.7 * x, y)) == pytest.approx(ref, abs=1e-5)
    assert float(linear_cka(x, 0.2 * y)) == pytest.approx(ref, abs=1e-5)


def test_chunked_equals_unchunked_and_layers_batch():
    torch.manual_seed(1)
    e, n = torch.randn(3, 101, 12), torch.randn(3, 37, 12)
    full, small = cosine_overlap(e, n, k=5, chunk=10_000), cosine_overlap(e, n, k=5, chunk=7)
    assert torch.allclose(full.max, small.max) and torch.allclose(full.topk_mean, small.topk_mean)
    assert torch.equal(full.argmax, small.argmax)
    assert torch.equal(knn_overlap(e, n, k=4, chunk=10_000), knn_overlap(e, n, k=4, chunk=9))
    per_layer = torch.stack([cosine_overlap(e[i], n[i], k=5).max for i in range(3)])
    assert torch.allclose(per_layer, full.max)
    assert linear_cka(e[:, :37], n).shape == (3,)


def test_knn_overlap_by_construction():
    # two clusters of existing facts; each fact of cluster A has a new near-copy, B has none
    torch.manual_seed(2)
    a = torch.tensor([1.0, 0.0, 0.0]) + 0.1 * torch.randn(5, 3)
    b = torch.tensor([0.0, 1.0, 0.0]) + 0.1 * torch.randn(5, 3)
    new = a + 1e-4 * torch.randn(5, 3)
    share = knn_overlap(torch.cat([a, b]), new, k=1)
    assert torch.equal(share, torch.tensor([1.0] * 5 + [0.0] * 5))
    assert torch.allclose(knn_overlap(torch.cat([a, b]), new, k=2)[5:], torch.zeros(5))


def test_drift_zero_for_unchanged_and_one_for_orthogonal():
    x = torch.randn(10, 8)
    assert torch.allclose(drift(x, x.clone()), torch.zeros(10), atol=1e-6)
    assert torch.allclose(drift(2 * x, x), torch.zeros(10), atol=1e-6)
    y = torch.tensor([[1.0, 0.0]])
    assert float(drift(torch.tensor([[0.0, 1.0]]), y)[0]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same facts"):
        drift(x, x[:5])


def test_probe_readout_decodes_planted_answer_and_fails_on_noise():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 16)) * 3
    y = rng.integers(0, 4, 200)
    x = centers[y] + rng.normal(size=(200, 16))
    r = probe_readout(x[:150], y[:150], x[150:], y[150:])
    assert r.accuracy > 0.9 and r.correct.shape == (50,)
    noise = probe_readout(x[:150], y[:150], rng.normal(size=(50, 16)), y[150:])
    assert noise.accuracy < 0.6
    with pytest.raises(ValueError, match="two distinct"):
        probe_readout(x[:5], [1] * 5, x[5:], [1] * 195)
