"""Ctrl-C and SIGTERM during training: finish the step, write a checkpoint, then stop.

A second signal stops at once (KeyboardInterrupt); the last complete checkpoint is still there
because every checkpoint is written to a temporary name and renamed into place.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequests:
    """While active (in the main thread), SIGINT/SIGTERM set `signal_number` instead of killing the process."""

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signal_number is not None

    @property
    def name(self) -> str:
        return "Ctrl-C" if self.signal_number == signal.SIGINT else signal.Signals(self.signal_number).name

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.signal_number is not None:
            raise KeyboardInterrupt
        self.signal_number = number

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for number in SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
