"""Data-parallel pieces: each process's share of a global batch and its loss factor give, after
averaging over processes, exactly the single-process gradient; and the evaluation batch size
follows free memory."""
import pytest
import torch

from interference.batching import Packed, answer_loss
from interference.distributed import (Distributed, DistributedError, eval_batch_size, local_indices,
                                      loss_factor, micro_split)


def _grad(model, batch: Packed, factor: float = 1.0) -> torch.Tensor:
    model.zero_grad()
    (answer_loss(model(batch.ids), batch) * factor).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()]).double()


@pytest.mark.parametrize("world,accum", [(2, 1), (3, 2), (2, 4)])
def test_shares_and_factors_reproduce_the_global_gradient(world, accum):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(20, 8), torch.nn.Linear(8, 20))
    ids = torch.randint(0, 20, (11, 6))
    mask = torch.zeros(11, 6, dtype=torch.bool)
    for i in range(11):  # answers of 1 to 3 tokens, so shares carry different token counts
        mask[i, 5 - (i % 3) - 1: 5] = True
    data = Packed(ids, mask)
    idx = torch.randperm(11)
    full = _grad(model, data.subset(idx))
    weights = data.loss_mask.sum(1)
    total = torch.zeros_like(full)
    for rank in range(world):
        for m in micro_split(local_indices(idx, rank, world), accum):
            total += _grad(model, data.subset(m), loss_factor(float(weights[m].sum()), float(weights[idx].sum()), world))
    # float32 reduction order moves single entries by ~1e-6 relative; a wrong factor moves them by ~10%
    torch.testing.assert_close(total / world, full, rtol=1e-4, atol=1e-7)


def test_eval_batch_size_follows_free_memory():
    kw = dict(n_layers=28, d_model=1536, d_vocab=151936, seq_len=80)
    small, big = eval_batch_size(free_bytes=8 << 30, **kw), eval_batch_size(free_bytes=64 << 30, **kw)
    assert 1 <= small < big <= 4096 and big == pytest.approx(8 * small, rel=0.05)
    assert eval_batch_size(free_bytes=None, **kw) == 512  # CPU default
    assert eval_batch_size(free_bytes=1, **kw) == 1


def test_single_process_is_the_identity_and_bad_settings_are_refused():
    d = Distributed(device="cpu")
    assert d.world_size == 1 and d.is_main and d.precision == "fp32"
    idx = torch.tensor([3, 1, 2])
    (m, f), = d.micro_batches(idx, torch.tensor([1, 1, 2, 1]))
    assert m.tolist() == [3, 1, 2] and f == 1.0
    assert d.gather([1, 2]) == [1, 2] and d.all_sum([1, 2]) == [1.0, 2.0]
    with pytest.raises(DistributedError, match="unknown precision"):
        Distributed(precision="fp8")
    with pytest.raises(DistributedError, match="needs a GPU with bfloat16"):
        Distributed(precision="bf16", device="cpu")
    with pytest.raises(DistributedError, match="smaller than 1 processes x 4"):
        Distributed(grad_accum=4, device="cpu").check_batch(2)
