"""What the command-line tools share: a parser whose errors are one line."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

# The largest learning rate taken. Rates above it are typing errors, not choices: Adam, RMSprop
# and SGD with momentum all diverge within a step at such rates on standardised inputs, and a
# rate like 1e30 trains to a finite but meaningless loss (3e30) that no divergence check stops.
MAX_LEARNING_RATE = 10.0


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows `(default: X)` only where there is a default worth showing."""

    def _get_help_string(self, action):
        if action.default in (None, False, argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse with defaults in --help and errors as one line: `prog: error: what (see --help)`."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


def positive_int(text: str) -> int:
    """argparse type: an integer > 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return int(text)


def non_negative_float(text: str) -> float:
    """argparse type: a number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def check_learning_rate(value) -> float:
    """`value` as a learning rate: a finite number in (0, MAX_LEARNING_RATE]; a one-line
    ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"learning_rate must be a number. Received: learning_rate={value!r}")
    if not math.isfinite(value) or not 0 < value <= MAX_LEARNING_RATE:
        raise ValueError(
            f"learning_rate must be a finite number above 0 and at most {MAX_LEARNING_RATE:g}. "
            f"Received: learning_rate={value}"
        )
    return float(value)


def learning_rate(text: str) -> float:
    """argparse type: a learning rate (see `check_learning_rate`)."""
    try:
        return check_learning_rate(float(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            str(err).replace("learning_rate must be", "must be").split(". Received")[0]
            + f", got {text!r}"
        ) from None


def boolean(text: str) -> bool:
    """argparse type: true or false (also yes/no, on/off, 1/0)."""
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise argparse.ArgumentTypeError(f"must be true or false, got {text!r}")


def parse_value(text: str):
    """A command-line value as the type it reads as: int, float, bool, None or str."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_assignments(items: list[str] | None, flag: str) -> dict:
    """`["a=1", "b=x"]` as `{"a": 1, "b": "x"}`; a malformed item is a one-line ValueError."""
    result = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} takes KEY=VALUE. Received: {item!r}")
        result[key.strip()] = parse_value(value)
    return result


def output_folder(run: str, out: str | None) -> Path:
    """--out, else the run folder (the folder of a .keras file given instead)."""
    if out:
        return Path(out)
    return Path(run) if Path(run).is_dir() else Path(run).parent
