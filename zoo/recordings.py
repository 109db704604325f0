"""Continuous recordings rebuilt from overlapping windows (UCI HAR's 50%-overlapping ones).

A data set cut into windows with a hop smaller than the window (HAR: 128 steps, hop 64) holds the
signal it was cut from: where window i's last `steps - hop` steps equal window i+1's first ones,
the two are consecutive. `segments` joins such runs back into one signal each, so a stream can
be played as the sensor produced it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Segment:
    """One continuous stretch of signal: windows `first`..`last` (inclusive) of one subject."""

    subject: int
    first: int
    last: int
    signal: np.ndarray  # (steps, channels)
    labels: np.ndarray  # (steps,): window k's label for steps k*hop .. k*hop+hop-1, the last
    # window's for the rest (HAR's continuous segments hold a single activity each)


def segments(x: np.ndarray, y: np.ndarray, subjects: np.ndarray, hop: int) -> list[Segment]:
    """The continuous segments of windows `x` (windows, steps, channels), in the order given.

    Windows i and i+1 are joined when they share the subject and `x[i][hop:] == x[i+1][:-hop]`
    exactly (the same parsed numbers); anywhere else a new segment starts.
    """
    steps = x.shape[1]
    if not 0 < hop <= steps:
        raise ValueError(f"hop must be in 1..{steps}. Received: hop={hop}")
    joined = (subjects[:-1] == subjects[1:]) & np.all(
        x[:-1, hop:] == x[1:, : steps - hop], axis=(1, 2)
    )
    starts = [0, *(np.flatnonzero(~joined) + 1)]
    ends = [*(s - 1 for s in starts[1:]), len(x) - 1]
    found = []
    for first, last in zip(starts, ends, strict=True):
        signal = np.concatenate(
            [x[first]] + [x[i, steps - hop :] for i in range(first + 1, last + 1)]
        )
        labels = np.repeat(y[first : last + 1], hop)
        labels = np.concatenate([labels, np.full(len(signal) - len(labels), y[last])])
        found.append(Segment(int(subjects[first]), int(first), int(last), signal, labels))
    return found
