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
    # cosines are float64 and clamped: a row's cosine with itself is 1 to float64 rounding on any
    # CPU (in float32 it came out 1 +- 1e-5 depending on summation order), never above 1
    assert ov.max.dtype == torch.float64 and float(ov.max.max()) <= 1.0
    assert torch.allclose(ov.max, torch.ones(50, dtype=torch.float64), rtol=0, atol=1e-12)
    assert torch.equal(ov.argmax, torch.arange(50))
    assert float(linear_cka(x, x)) == pytest.approx(1.0, abs=1e-6)  # float64 inside, clamped to <= 1
    assert float(linear_cka(x, x)) <= 1.0


def test_orthogonal_sets_give_zero():
    x = torch.zeros(8, 16)
    y = torch.zeros(8, 16)
    x[:, :8] = torch.randn(8, 8)
    y[:, 8:] = torch.randn(8, 8)
    ov = cosine_overlap(x, y, k=3)
    # disjoint supports: every product is an exact 0, so the cosines are exactly 0
    assert torch.equal(ov.max, torch.zeros(8, dtype=torch.float64))
    assert torch.equal(ov.topk_mean, torch.zeros(8, dtype=torch.float64))
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
    # both sides are computed in float64 (only the result is cast to float32, ~6e-8 relative), so
    # these tolerances do not depend on a float32 reduction order
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
    zero = torch.zeros(10, dtype=torch.float64)  # drift is computed in float64: rounding ~1e-16
    assert torch.allclose(drift(x, x.clone()), zero, rtol=0, atol=1e-12)
    assert torch.allclose(drift(2 * x, x), zero, rtol=0, atol=1e-12)
    assert float(drift(-x, x).max()) <= 2.0  # clamped cosine: never past a reversed state
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


def test_overlap_with_new_picks_same_relation_nearest_after_centring():
    from interference.metrics.overlap import overlap_with_new
    mu = torch.tensor([10.0, 0, 0, 0])  # a large shared component (template, position)
    watch = mu + torch.tensor([[0.0, 1, 0, 0], [0, 0, 1, 0], [0, -1, -1, 0], [0, 0, 0, 0]])  # mean = mu
    w_rel = ["r1", "r1", "r2", "r3"]
    new = mu + torch.tensor([[0.0, 0, 2, 0], [0, 3, 0, 0], [0, 1, 1, 0]])
    n_rel = ["r1", "r2", "r1"]
    o = overlap_with_new(torch.stack([watch, 5 * watch]), w_rel, torch.stack([new, 5 * new]), n_rel, k=2)
    h = 2 ** -0.5
    # w0: r1 news at cos 0 (n0) and 1/sqrt2 (n2); n1 would be cos 1 but is another relation
    # w1: cos 1 to n0; w2 (r2): only n1, cos -1/sqrt2; w3: no new fact of relation r3
    expected = np.array([h, 1.0, -h, np.nan])
    for layer in range(2):  # the second layer is the first scaled by 5: cosines do not change
        np.testing.assert_allclose(o.max[layer], expected, rtol=0, atol=1e-12)
        assert o.nearest[layer].tolist() == [2, 0, 1, -1]
        assert o.neighbours[layer].tolist() == [[2, 0], [0, 2], [1, -1], [-1, -1]]
    # without centring the shared component makes every pair look alike (all cosines > 0.95)
    raw = cosine_overlap(watch[:3], new, k=1).max
    assert float(raw.min()) > 0.95
    # [m, d] inputs give one layer; relation lists must match the states
    assert overlap_with_new(watch, w_rel, new, n_rel).max.shape == (1, 4)
    with pytest.raises(ValueError, match="one relation per fact"):
        overlap_with_new(watch, w_rel[:3], new, n_rel)


def test_cosine_is_float64_and_clamped():
    from interference.metrics.overlap import cosine
    x = torch.randn(1000, dtype=torch.float32)
    c = cosine(x, x.clone(), dim=0)
    assert c.dtype == torch.float64 and float(c) <= 1.0 and float(c) == pytest.approx(1.0, abs=1e-12)
    assert float(cosine(x, -x, dim=0)) >= -1.0
    assert float(cosine(torch.zeros(3), torch.ones(3), dim=0)) == 0.0  # a zero vector has no direction


def test_cosine_overlap_values_are_the_float64_cosines():
    """Candidates are picked in float32, values recomputed in float64: same as brute force."""
    torch.manual_seed(3)
    e, n = torch.randn(2, 40, 16), torch.randn(2, 30, 16)
    ov = cosine_overlap(e, n, k=4)
    ref = torch.nn.functional.normalize(e.double(), dim=-1) @ torch.nn.functional.normalize(n.double(), dim=-1).transpose(-1, -2)
    top = ref.topk(4, dim=-1)
    torch.testing.assert_close(ov.max, top.values[..., 0], rtol=0, atol=1e-12)
    torch.testing.assert_close(ov.topk_mean, top.values.mean(-1), rtol=0, atol=1e-12)
    assert torch.equal(ov.topk_index, top.indices)
