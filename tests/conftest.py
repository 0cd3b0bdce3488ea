"""Shared fixtures: one tiny pre-trained base for the whole session, in a private cache.

Why session-scoped: pre-training the quick world takes ~15 s on 2 cores; every test that needs
"a model that knows things" shares it. Fixtures from several test modules are appended below.
"""
from __future__ import annotations

import os

import pytest
import torch

# One intra-op thread: the test models are tiny, so a second OpenMP thread buys nothing and,
# when the cores are shared (CI beside other jobs), spin-waiting threads make small ops ~100x
# slower (measured: the quick base took 813 s to pre-train on 2 threads under load, 34 s on 1).
# INTERFERENCE_TEST_THREADS=2 runs the suite on two threads once, to shake out tests whose float32
# tolerances depend on the reduction order.
torch.set_num_threads(int(os.environ.get("INTERFERENCE_TEST_THREADS", "1")))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("interference_cache")
    old = os.environ.get("INTERFERENCE_CACHE")
    os.environ["INTERFERENCE_CACHE"] = str(d)
    yield d
    if old is None:
        os.environ.pop("INTERFERENCE_CACHE", None)
    else:
        os.environ["INTERFERENCE_CACHE"] = old


@pytest.fixture(scope="session")
def quick_spec():
    from interference.bases import BaseSpec
    return BaseSpec.default(quick=True)


@pytest.fixture(scope="session")
def quick_base(cache_dir, quick_spec):
    """(model, tokenizer, world, run_dir) of the tiny pre-trained base."""
    from interference.pretrain import base_model
    return base_model(quick_spec, device="cpu", progress=False)


# ---------------------------------------------------------------- fine-tuning (issue 3)
@pytest.fixture(scope="session")
def ft_base_dir(quick_base):
    """The quick base's run directory, used as FinetuneConfig.base_dir."""
    return str(quick_base[3])


@pytest.fixture(scope="session")
def ft_config(ft_base_dir):
    """Factory for a tiny fine-tuning config on the quick base: 16 SFT facts, 2 evals, seconds."""
    from interference.sft_data import SFTDataConfig
    from interference.train import FinetuneConfig

    def make(method: str = "sft", **kw):
        base = dict(base_dir=ft_base_dir, data=SFTDataConfig(n_facts=16, n_task=4, n_stability=16),
                    method=method, steps=4, batch_size=8, eval_every=2, ckpt_every=2, lr=1e-3)
        return FinetuneConfig(**{**base, **kw})
    return make


# ---------------------------------------------------------------- probes & metrics (issue 4)
@pytest.fixture(scope="module")
def one_thread():
    """Run a module on one intra-op thread. Why: on a 2-core machine shared with other jobs, two
    OpenMP threads spin-wait on each other and small-tensor ops get ~100x slower (measured: a
    50x11x64 linear took 21 ms with 2 threads vs 0.2 ms with 1 under load 8)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# tests/real_fixtures.py builds tiny real-architecture models once per session
import sys as _sys  # noqa: E402
from pathlib import Path as _Path  # noqa: E402
_sys.path.insert(0, str(_Path(__file__).parent))
