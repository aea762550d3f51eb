"""The CPU thread tuner keeps the count whose timed training steps were fastest."""

from __future__ import annotations

import pytest
import torch

from vaezoo.errors import UsageError
from vaezoo.threads import THREADS_ENV, ThreadTuner, _candidates


class FakeMachine:
    """A clock where a step with n threads takes cost[n] seconds, and a record of thread switches."""

    def __init__(self, cost: dict[int, float]):
        self.cost, self.now, self.threads, self.history = cost, 0.0, None, []

    def set_threads(self, n: int) -> None:
        self.threads = n
        self.history.append(n)

    def clock(self) -> float:
        return self.now

    def run(self, tuner: ThreadTuner, steps: int) -> None:
        for _ in range(steps):
            self.now += self.cost[self.threads]
            tuner.step_done()


@pytest.mark.parametrize("cost, best", [({1: 0.01, 2: 0.05}, 1), ({1: 0.05, 2: 0.01}, 2)])
def test_keeps_fastest_count(cost, best):
    machine = FakeMachine(cost)
    tuner = ThreadTuner([1, 2], trial_steps=3, period=100, set_threads=machine.set_threads, clock=machine.clock)
    machine.run(tuner, 20)
    assert tuner.best == best and machine.threads == best
    assert machine.history == [1, 2, best]


def test_retunes_when_load_changes():
    machine = FakeMachine({1: 0.01, 2: 0.05})
    tuner = ThreadTuner([1, 2], trial_steps=3, period=50, set_threads=machine.set_threads, clock=machine.clock)
    machine.run(tuner, 20)
    assert machine.threads == 1
    machine.cost = {1: 0.05, 2: 0.01}  # the other jobs finished
    machine.run(tuner, 60)
    assert tuner.best == 2 and machine.threads == 2


def test_single_candidate_never_switches():
    machine = FakeMachine({3: 0.01})
    tuner = ThreadTuner([3], set_threads=machine.set_threads, clock=machine.clock)
    machine.run(tuner, 1000)
    assert machine.history == [3]


def test_candidates():
    assert _candidates(1) == [1]
    assert _candidates(2) == [1, 2]
    assert _candidates(6) == [1, 2, 4, 6]


def test_pinned_by_environment(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "1")
    assert ThreadTuner.for_device(torch.device("cpu")).candidates == [1]
    monkeypatch.setenv(THREADS_ENV, "two")
    with pytest.raises(UsageError, match=THREADS_ENV):
        ThreadTuner.for_device(torch.device("cpu"))


def test_restore_gives_back_the_thread_count():
    before = torch.get_num_threads()
    tuner = ThreadTuner([1, before + 1])
    tuner.restore()
    assert torch.get_num_threads() == before
