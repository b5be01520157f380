"""Waiting with a deadline. Every wait says what it waits for, reports while it waits, and on timeout
fails with the last state it saw: never an unbounded `while not ready: sleep`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

REPORT_EVERY_SECONDS = 30.0


class WaitTimeout(AssertionError):
    pass


def wait_for(what: str, check: Callable[[], T | None], timeout: float, interval: float = 2.0,
             describe: Callable[[], str] | None = None) -> T:
    """Call `check` until it returns something other than None/False; return that value.

    `describe` renders the current state for the progress lines and the timeout message.
    """
    print(f"waiting up to {timeout:.0f}s for {what}", flush=True)
    start = time.monotonic()
    deadline = start + timeout
    next_report = start + REPORT_EVERY_SECONDS
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        now = time.monotonic()
        if now >= deadline:
            state = describe() if describe else "n/a"
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}; last state: {state}")
        if now >= next_report:
            state = f": {describe()}" if describe else ""
            print(f"  still waiting for {what} ({deadline - now:.0f}s left){state}", flush=True)
            next_report = now + REPORT_EVERY_SECONDS
        time.sleep(min(interval, max(deadline - now, 0.1)))
