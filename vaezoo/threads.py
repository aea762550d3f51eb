"""Choosing the CPU's intra-op thread count from timed training steps.

On a CPU shared with other jobs, OpenMP's spinning threads can make two threads ten times slower
than one; on an idle machine two are faster. Neither default is right everywhere, so the trainer
times real steps (the maths is the same at any thread count) with each candidate and keeps the
fastest, re-checking every `period` steps as the machine's load changes. $VAEZOO_THREADS=N pins
the count instead.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import torch

from .errors import UsageError

THREADS_ENV = "VAEZOO_THREADS"


def _candidates(most: int) -> list[int]:
    """1, 2, 4, ... up to `most`, and `most` itself."""
    out, n = [], 1
    while n < most:
        out.append(n)
        n *= 2
    return [*out, most]


def pinned_threads() -> int | None:
    """The thread count fixed by $VAEZOO_THREADS, or None to tune."""
    text = os.environ.get(THREADS_ENV, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"${THREADS_ENV}='{text}' must be a whole number of threads >= 1")
    return int(text)


class ThreadTuner:
    """Call `step_done()` after every training step; it switches thread counts between trials."""

    def __init__(self, candidates: list[int], trial_steps: int = 6, period: int = 400,
                 set_threads: Callable[[int], None] = torch.set_num_threads,
                 clock: Callable[[], float] = time.perf_counter):
        self.candidates, self.trial_steps, self.period = candidates, trial_steps, period
        self._set, self._clock = set_threads, clock
        self.best = candidates[-1]
        self._original = torch.get_num_threads()
        self._times: dict[int, list[float]] = {}
        self._steps = 0
        self._last: float | None = None
        self._trial = 0 if len(candidates) > 1 else None  # index of the candidate being timed
        self._set(candidates[0] if self._trial == 0 else self.best)

    @classmethod
    def for_device(cls, device: torch.device) -> ThreadTuner:
        """Tuning on the CPU only; elsewhere (and when pinned) one fixed candidate."""
        pinned = pinned_threads()
        if pinned is not None:
            return cls([pinned])
        if device.type != "cpu":
            return cls([torch.get_num_threads()])
        return cls(_candidates(torch.get_num_threads()))

    def step_done(self) -> None:
        now = self._clock()
        last, self._last = self._last, now
        self._steps += 1
        if self._trial is None:
            if len(self.candidates) > 1 and self._steps % self.period == 0:
                self._start_trial(0)
            return
        if last is not None:  # the first step after a switch is not timed (it pays the switch)
            times = self._times.setdefault(self.candidates[self._trial], [])
            times.append(now - last)
            if len(times) >= self.trial_steps:
                if self._trial + 1 < len(self.candidates):
                    self._start_trial(self._trial + 1)
                else:
                    self.best = min(self._times, key=lambda n: statistics.median(self._times[n]))
                    self._trial = None
                    self._set(self.best)

    def restore(self) -> None:
        """Give the process back the thread count it had before training."""
        self._set(self._original)

    def _start_trial(self, index: int) -> None:
        if index == 0:
            self._times = {}
        self._trial = index
        self._last = None
        self._set(self.candidates[index])
