"""Progress bars count to the run's expected length, not to a cap the run never reaches."""
from __future__ import annotations

import torch

from test_loop import Toy, _toy_data, _toy_loss


class Bars:
    """Stands in for tqdm and records each bar's total as the run goes."""

    made: list = []

    def __init__(self, total=None, initial=0, **kw):
        self.total, self.n, self.totals = total, initial, [total]
        Bars.made.append(self)

    def update(self, k):
        self.n += k

    def refresh(self):
        self.totals.append(self.total)

    def set_postfix(self, *a, **k):
        pass

    def close(self):
        pass


class StopAt:
    def __init__(self, step):
        self.step = step

    def on_step(self, s):
        s.stop = s.step >= self.step


def test_a_run_stopped_by_a_criterion_counts_to_the_expected_length(monkeypatch):
    import interference.loop as L
    monkeypatch.setattr(L, "tqdm", Bars)
    cfg = L.LoopConfig(lr=0.1, batch_size=4, steps=20_000, warmup_steps=0)
    model = Toy()
    L.train_loop(model, model.parameters(), _toy_data(), cfg, _toy_loss, callbacks=[StopAt(8)], progress=True,
                 expected_steps=10)
    assert Bars.made[-1].totals == [10]  # not the 20,000-step cap
    L.train_loop(model, model.parameters(), _toy_data(), cfg, _toy_loss, callbacks=[StopAt(30)], progress=True,
                 expected_steps=10)
    bar = Bars.made[-1]
    assert bar.totals[0] == 10 and bar.total >= bar.n == 30 and bar.total < 20_000  # grew as the run outlasted it
    L.train_loop(model, model.parameters(), _toy_data(), L.LoopConfig(lr=0.1, batch_size=4, steps=5), _toy_loss,
                 progress=True)
    assert Bars.made[-1].totals == [5]  # a fixed-length run counts to its length
