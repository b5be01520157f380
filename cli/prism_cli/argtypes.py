"""argparse types shared by the subcommands: a bad value is refused at parse time with one message
naming the flag, the allowed range and the value given (argparse exits 2, no traceback)."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def whole_number(low: int, high: int | None = None, what: str = "") -> Callable[[str], int]:
    """An int in [low, high]; `what` names the value in the message ("a port number")."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            wanted = f"{what + ' ' if what else 'a whole number '}{low}-{high}" if high is not None \
                else f"{what or 'a whole number'} of at least {low}"
            raise argparse.ArgumentTypeError(f"must be {wanted} (got {text!r})")
        return value

    parse.__name__ = "whole number"
    return parse


PORT = whole_number(1, 65535, "a port number")


def non_empty(text: str) -> str:
    """Text with something other than whitespace in it."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"empty query ({text!r}): give the text to search for")
    return text
