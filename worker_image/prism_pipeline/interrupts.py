"""SIGINT and SIGTERM for the long-running commands (`prism run`, `prism serve`): the first signal calls
the command's own stop (which raises in the main thread, so the command winds down and exits 130 or
143), the next kills this process's Ray and exits at once."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from typing import Any


class Interrupts:
    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, program: str, stop: Callable[[int], None]):
        self.program = program      # names the command in the second signal's line
        self._stop = stop           # called with the first signal's number; raises to wind down
        self.first: int | None = None
        self.shutting_down = False  # set once winding down: any signal then kills at once
        self._saved: dict[int, Any] = {}

    def install(self) -> None:
        for sig in self.SIGNALS:
            previous = signal.signal(sig, self._handle)
            self._saved.setdefault(sig, previous)

    def restore(self) -> None:
        for sig, previous in self._saved.items():
            signal.signal(sig, previous)

    def _handle(self, signum: int, frame: Any) -> None:
        from prism_pipeline.runner import _kill_ray

        if self.first is not None or self.shutting_down:
            say(f"{self.program}: {signal.Signals(signum).name} again: stopping Ray and exiting now\n")
            _kill_ray()
            os._exit(128 + (self.first or signum))
        self.first = signum
        self._stop(signum)


def say(text: str) -> None:
    """Write from a signal handler: straight to fd 2 (print could re-enter a buffered write)."""
    with contextlib.suppress(OSError):
        os.write(2, text.encode())
