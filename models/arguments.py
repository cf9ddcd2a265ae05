"""Argument types shared by the ``avsearch`` subcommands: each refuses a bad value with a
one-line message that argparse prints before it exits."""

from __future__ import annotations

import argparse


def whole_number(text: str) -> int:
    """A whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value
