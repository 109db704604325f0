"""Synthetic sequence tasks from the classic RNN tutorials, seeded and generated in memory."""

from __future__ import annotations

import numpy as np

from zoo.tasks.base import Task, check_positive, register_task


def _chronological(n: int, val_fraction: float, test_fraction: float) -> tuple[slice, ...]:
    """Train, validation and test slices of 0..n-1, in time order (no window crosses a split)."""
    n_test = max(1, int(n * test_fraction))
    n_val = max(1, int(n * val_fraction))
    return slice(0, n - n_val - n_test), slice(n - n_val - n_test, n - n_test), slice(n - n_test, n)


@register_task(epochs=10, batch_size=32)
def echo(
    *,
    series_length: int = 50_000,
    window: int = 15,
    echo_step: int = 3,
    stateful: bool = False,
    streams: int = 32,
    seed: int = 0,
) -> Task:
    """Echo-RNN: a random bit stream; the target is the input `echo_step` steps earlier.

    The stream is cut into consecutive windows (80/10/10 in time order). Within a window the
    first `echo_step` targets depend on the previous window, so they carry weight 0: loss and
    accuracy count only the steps that can be known (t >= echo_step).

    `stateful` is the tutorial's truncated backpropagation through time: each split is cut into
    `streams` continuous pieces side by side, a batch holds the next window of every piece, and
    the model carries each row's state from batch to batch (reset at each epoch). Then only the
    first `echo_step` steps of each piece are unknowable; every other step counts, the first
    steps of each window included.
    """
    check_positive(series_length=series_length, window=window, echo_step=echo_step)
    if echo_step >= window:
        raise ValueError(
            f"echo_step must be below window={window}. Received: echo_step={echo_step}"
        )
    rng = np.random.default_rng(seed)
    stream = rng.integers(0, 2, size=series_length)
    target = np.concatenate([np.zeros(echo_step, dtype=stream.dtype), stream[:-echo_step]])
    info = {"echo_step": echo_step, "window": window, "series_length": series_length}
    if stateful:
        return _stateful_echo(stream, target, window, echo_step, streams, info)
    n = series_length // window
    x = stream[: n * window].reshape(n, window, 1).astype(np.float32)
    y = target[: n * window].reshape(n, window).astype(np.int32)
    w = np.ones((n, window), dtype=np.float32)
    w[:, :echo_step] = 0.0
    tr, va, te = _chronological(n, 0.1, 0.1)
    return Task(
        name="echo",
        x_train=x[tr],
        y_train=y[tr],
        w_train=w[tr],
        x_val=x[va],
        y_val=y[va],
        w_val=w[va],
        x_test=x[te],
        y_test=y[te],
        w_test=w[te],
        output_kind="sequence_classification",
        num_outputs=2,
        class_names=("0", "1"),
        info=info,
    )


def _side_by_side(values: np.ndarray, streams: int, window: int, dtype) -> np.ndarray:
    """`streams` equal pieces of `values` cut into windows: window k of every piece, then k+1."""
    rows = values.reshape(streams, -1, window)
    return rows.transpose(1, 0, 2).reshape(-1, window).astype(dtype)


def _stateful_echo(stream, target, window: int, echo_step: int, streams: int, info) -> Task:
    """The echo task as `streams` continuous pieces of each split, side by side (see `echo`)."""
    check_positive(streams=streams)
    splits = {}
    bounds = np.cumsum([0, *(int(len(stream) * f) for f in (0.8, 0.1, 0.1))])
    for name, start, stop in zip(("train", "val", "test"), bounds[:-1], bounds[1:], strict=True):
        per = (stop - start) // streams // window * window  # steps of each piece
        if per < 2 * window:
            raise ValueError(
                f"series_length={len(stream)} is too short for {streams} streams of windows of "
                f"{window} in the {name} split; lower streams or raise series_length"
            )
        pieces = slice(start, start + per * streams)
        weights = np.ones((streams, per), dtype=np.float32)
        weights[:, :echo_step] = 0.0  # a piece's first steps echo the piece before it
        splits |= {
            f"x_{name}": _side_by_side(stream[pieces], streams, window, np.float32)[..., None],
            f"y_{name}": _side_by_side(target[pieces], streams, window, np.int32),
            f"w_{name}": _side_by_side(weights, streams, window, np.float32),
        }
    return Task(
        name="echo",
        **splits,
        output_kind="sequence_classification",
        num_outputs=2,
        class_names=("0", "1"),
        stateful_batch=streams,
        info={**info, "stateful": True, "streams": streams},
    )


@register_task(epochs=200, batch_size=64, learning_rate=0.01, patience=40)
def count_ones(
    *, length: int = 20, train_size: int = 10_000, val_size: int = 1_000, seed: int = 0
) -> Task:
    """Count the ones: every binary string of `length` bits; the target is how many bits are set.

    All 2**length strings are shuffled with the seed; the first `train_size` are for training
    (of which `val_size` are held out for validation) and every other string is the test set:
    1 038 576 strings with the defaults.
    """
    check_positive(length=length, train_size=train_size, val_size=val_size)
    total = 2**length
    if train_size >= total or val_size >= train_size:
        raise ValueError(
            f"need val_size < train_size < 2**length={total}. "
            f"Received: train_size={train_size}, val_size={val_size}"
        )
    numbers = np.random.default_rng(seed).permutation(total)
    bits = ((numbers[:, None] >> np.arange(length - 1, -1, -1)) & 1).astype(np.float32)
    x = bits[..., None]
    y = bits.sum(axis=1).astype(np.int32)
    fit, val = slice(0, train_size - val_size), slice(train_size - val_size, train_size)
    test = slice(train_size, total)
    return Task(
        name="count_ones",
        x_train=x[fit],
        y_train=y[fit],
        x_val=x[val],
        y_val=y[val],
        x_test=x[test],
        y_test=y[test],
        output_kind="classification",
        num_outputs=length + 1,
        class_names=tuple(str(i) for i in range(length + 1)),
        info={"length": length},
    )


def sine_curve(t: np.ndarray) -> np.ndarray:
    """The tutorial's signal: t*sin(t)/3 + 2*sin(5t)."""
    return t * np.sin(t) / 3 + 2 * np.sin(5 * t)


@register_task(epochs=40, batch_size=50)
def sine(
    *,
    steps: int = 20,
    train_size: int = 5_000,
    val_size: int = 500,
    test_size: int = 1_000,
    t_max: float = 30.0,
    resolution: float = 0.1,
    seed: int = 0,
) -> Task:
    """Sine-like next-step prediction: y(t+0.1) at each of `steps` steps of t*sin(t)/3+2*sin(5t).

    As in the tutorial, each window starts at a random real time in [0, t_max - (steps+1)*0.1];
    the three splits are independent draws. Targets are the inputs moved one step ahead.
    """
    check_positive(steps=steps, train_size=train_size, val_size=val_size, test_size=test_size)
    rng = np.random.default_rng(seed)
    offsets = np.arange(steps + 1) * resolution
    span = t_max - offsets[-1]
    if span <= 0:
        raise ValueError(f"t_max must exceed (steps+1)*resolution. Received: t_max={t_max}")

    def draw(n):
        t = rng.uniform(0, span, size=(n, 1)) + offsets
        series = sine_curve(t).astype(np.float32)
        return series[:, :-1, None], series[:, 1:, None]

    (xtr, ytr), (xva, yva), (xte, yte) = draw(train_size), draw(val_size), draw(test_size)
    return Task(
        name="sine",
        x_train=xtr,
        y_train=ytr,
        x_val=xva,
        y_val=yva,
        x_test=xte,
        y_test=yte,
        output_kind="sequence_regression",
        num_outputs=1,
        causal=True,
        info={
            "persistence_mse_val": float(np.mean((yva - xva) ** 2)),
            "persistence_mse_test": float(np.mean((yte - xte) ** 2)),
            "resolution": resolution,
        },
    )


@register_task(epochs=30, batch_size=64)
def random_walk(*, length: int = 5_000, steps: int = 20, horizon: int = 1, seed: int = 0) -> Task:
    """Random-walk forecasting: from the last `steps` values predict the next `horizon` values.

    A seeded Gaussian random walk (unit steps), split 70/15/15 in time order. Each window is
    expressed relative to its last value (inputs and targets minus it), so predicting 0 is the
    persistence forecast "tomorrow = today", the best possible predictor for a true random walk.
    """
    check_positive(length=length, steps=steps, horizon=horizon)
    if length < 10 * (steps + horizon):
        raise ValueError(
            f"length must be at least 10*(steps+horizon)={10 * (steps + horizon)}. "
            f"Received: length={length}"
        )
    walk = np.cumsum(np.random.default_rng(seed).normal(size=length)).astype(np.float32)
    idx = np.arange(length - steps - horizon + 1)[:, None]
    windows = walk[idx + np.arange(steps + horizon)]
    anchor = windows[:, steps - 1 : steps]
    x = (windows[:, :steps] - anchor)[..., None]
    y = windows[:, steps:] - anchor
    tr, va, te = _chronological(len(x), 0.15, 0.15)
    gap = steps + horizon - 1  # drop windows that overlap the previous split
    va, te = slice(va.start + gap, va.stop), slice(te.start + gap, te.stop)
    return Task(
        name="random_walk",
        x_train=x[tr],
        y_train=y[tr],
        x_val=x[va],
        y_val=y[va],
        x_test=x[te],
        y_test=y[te],
        output_kind="regression",
        num_outputs=horizon,
        info={
            "persistence_mse_val": float(np.mean(y[va] ** 2)),
            "persistence_mse_test": float(np.mean(y[te] ** 2)),
            "test_anchor": anchor[te, 0].tolist(),
        },
    )
