"""Per-window features of inertial signals, as UCI HAR's `features_info.txt` describes them.

`window_features(x, channels)` turns raw windows (n, steps, channels) into a (n, F) table for a
linear model (the reference row beside the recurrent models). Every feature of a window is
computed from that window alone (no statistics of other windows, subjects or splits), so the same
function works on any user's data and in a stream. All windows are computed at once with NumPy.

Signals: every channel; for each 3-axis sensor (channels `S_x`, `S_y`, `S_z`) its magnitude;
for each 3-axis sensor but gravity's (`total_acc`) its jerk (first difference times the sampling
rate) and the jerk's magnitude. For UCI HAR's 9 channels: 20 signals.

Per signal, in the time domain: mean, std, mad (median absolute deviation), max, min, energy
(mean of squares), iqr, ar1..ar4 (least-squares autoregression of order 4 with an intercept).
In the frequency domain, from the one-sided power spectrum of the signal minus its mean, scaled
so that it sums to the variance: entropy (Shannon entropy of the normalised spectrum divided by
log of the number of bins: 0 for a pure tone, 1 for a flat spectrum), mean_freq (spectral
centroid, Hz), max_freq (frequency of the largest bin, Hz), spec_skew and spec_kurt (third and
fourth standardised moments of the frequency distribution; kurtosis not in excess), band1..band8
(power in 8 equal bands from 0 to the Nyquist frequency, UCI HAR's bandsEnergy).
Per 3-axis sensor: sma (signal magnitude area: mean of |x| + |y| + |z|) and corr_xy, corr_xz,
corr_yz (Pearson correlation between axes). With `total_acc`: gravity_angle_x/y/z (degrees
between the window's mean total acceleration, the gravity estimate, and each axis) and, for each
other sensor, S_gravity_angle (degrees between that sensor's mean vector and gravity).

A statistic that is undefined for a window (the correlation or spectral shape of a constant
signal) is 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

GRAVITY = "total_acc"  # the sensor whose window mean estimates gravity; no jerk for it
AXES = ("x", "y", "z")
AR_ORDER = 4
BANDS = 8
TIME_STATS = ("mean", "std", "mad", "max", "min", "energy", "iqr") + tuple(
    f"ar{k}" for k in range(1, AR_ORDER + 1)
)
FREQ_STATS = ("entropy", "mean_freq", "max_freq", "spec_skew", "spec_kurt") + tuple(
    f"band{k}" for k in range(1, BANDS + 1)
)
SIGNAL_STATS = TIME_STATS + FREQ_STATS
CHUNK = 2048  # windows computed together: bounds memory (about 0.2 GB for HAR) at full speed
# variance below QUIET * energy: a constant signal (no shape, no spectrum); float32 rounds more
QUIET = {"float64": 1e-20, "float32": 1e-12}
# the AR fit's ridge, relative to the mean lag energy: float32 needs more to stay well-posed
RIDGE = {"float64": 1e-9, "float32": 1e-6}


def _sensors(channels: Sequence[str]) -> list[str]:
    """The prefixes S with S_x, S_y and S_z all among the channels, in channel order."""
    found = []
    for name in channels:
        prefix = name[:-2]
        if name.endswith("_x") and all(f"{prefix}_{a}" in channels for a in AXES):
            found.append(prefix)
    return found


def _signals(x, channels: Sequence[str], sampling_hz: float, xp):
    """[(names, (n, S, steps) signals)], then the jerk signals' (n, S, steps - 1)."""
    sensors = _sensors(channels)
    column = {name: i for i, name in enumerate(channels)}
    names = list(channels)
    full = [x[:, :, i] for i in range(len(channels))]
    jerk_names, jerk = [], []
    for s in sensors:
        axes = [x[:, :, column[f"{s}_{a}"]] for a in AXES]
        names.append(f"{s}_mag")
        full.append(xp.sqrt(sum(a * a for a in axes)))
        if s != GRAVITY:
            d = [xp.diff(a, axis=-1) * sampling_hz for a in axes]
            jerk_names += [f"{s}_jerk_{a}" for a in AXES] + [f"{s}_jerk_mag"]
            jerk += [*d, xp.sqrt(sum(a * a for a in d))]
    groups = [(names, xp.stack(full, axis=1))]
    if jerk:
        groups.append((jerk_names, xp.stack(jerk, axis=1)))
    return groups


def _time_stats(z, quiet, xp):
    """(n, S, L) signals -> (n, S, len(TIME_STATS))."""
    mean = xp.mean(z, axis=-1)
    centred = z - mean[..., None]
    ordered = xp.sort(z, axis=-1)  # one sort for the median, quartiles, max and min
    median = _quantile(ordered, 0.5)
    stats = [
        mean,
        xp.where(quiet, 0.0, xp.sqrt(xp.mean(centred * centred, axis=-1))),  # not rounding noise
        _quantile(xp.sort(xp.abs(z - median[..., None]), axis=-1), 0.5),
        ordered[..., -1],
        ordered[..., 0],
        xp.mean(z * z, axis=-1),
        _quantile(ordered, 0.75) - _quantile(ordered, 0.25),
    ]
    return xp.stack(stats + _autoregression(centred, quiet, xp), axis=-1)


def _quantile(ordered, q: float):
    """The q-quantile of sorted values along the last axis (NumPy's default, linear)."""
    position = q * (ordered.shape[-1] - 1)
    low = int(np.floor(position))
    high = min(low + 1, ordered.shape[-1] - 1)
    return ordered[..., low] + (position - low) * (ordered[..., high] - ordered[..., low])


def _autoregression(centred, quiet, xp) -> list:
    """Least-squares AR(4) coefficients with an intercept, every window and signal at once.

    z_t = a1 z_(t-1) + ... + a4 z_(t-4) + c, from the normal equations solved by a Cholesky
    factorisation written out entry by entry (elementwise ops only: no batched solve op, which
    TFLite lacks). A small ridge keeps signals of lower rank (a pure sine) solvable, and float32
    stable; quiet (constant) signals get 0.
    """
    m, steps = AR_ORDER, centred.shape[-1]
    cols = [centred[..., m - k : steps - k] for k in range(m + 1)]  # z_(t-k); k = 0 the target
    ones = xp.ones_like(cols[0][..., 0])
    # the normal equations over (lags, 1): gram[i][j] and rhs[i], i, j = 0..m (m: the intercept)
    lags = [xp.sum(c, axis=-1) for c in cols]
    gram = [[None] * (m + 1) for _ in range(m + 1)]
    for i in range(1, m + 1):
        for j in range(i, m + 1):
            gram[i - 1][j - 1] = gram[j - 1][i - 1] = xp.sum(cols[i] * cols[j], axis=-1)
        gram[i - 1][m] = gram[m][i - 1] = lags[i]
    gram[m][m] = (steps - m) * ones
    rhs = [xp.sum(cols[0] * cols[i], axis=-1) for i in range(1, m + 1)] + [lags[0]]
    ridge = RIDGE[_precision(centred)] * sum(gram[i][i] for i in range(m)) / m
    for i in range(m + 1):
        for j in range(m + 1):
            regular = gram[i][j] + ridge if i == j else gram[i][j]
            gram[i][j] = xp.where(quiet, float(i == j), regular)  # quiet: nothing to fit
    chol = [[None] * (m + 1) for _ in range(m + 1)]
    for j in range(m + 1):
        chol[j][j] = xp.sqrt(gram[j][j] - sum(chol[j][k] * chol[j][k] for k in range(j)))
        for i in range(j + 1, m + 1):
            chol[i][j] = (gram[i][j] - sum(chol[i][k] * chol[j][k] for k in range(j))) / chol[j][j]
    y = []
    for i in range(m + 1):
        y.append((rhs[i] - sum(chol[i][k] * y[k] for k in range(i))) / chol[i][i])
    coef = [None] * (m + 1)
    for i in reversed(range(m + 1)):
        coef[i] = (y[i] - sum(chol[k][i] * coef[k] for k in range(i + 1, m + 1))) / chol[i][i]
    return [xp.where(quiet, 0.0, c) for c in coef[:m]]


def _precision(x) -> str:
    """ "float64" for a 64-bit array or tensor, else "float32"."""
    return "float64" if "64" in str(x.dtype) else "float32"


def _spectrum_matrices(steps: int, sampling_hz: float, dtype: str):
    """Cosine and sine matrices (steps, bins) of the one-sided DFT, the bin frequencies (Hz),
    the one-sided weights (every bin but 0 and Nyquist counted twice) and the (bins, BANDS)
    band membership: the FFT as matmuls, which every runtime has."""
    bins = steps // 2 + 1
    angle = 2 * np.pi * np.outer(np.arange(steps), np.arange(bins)) / steps
    freq = np.arange(bins) * sampling_hz / steps
    weight = np.ones(bins)
    weight[1 : (steps + 1) // 2] = 2
    band = np.minimum((freq / (sampling_hz / 2) * BANDS).astype(int), BANDS - 1)
    member = (band[:, None] == np.arange(BANDS)).astype(float)
    return [a.astype(dtype) for a in (np.cos(angle), np.sin(angle), freq, weight, member)]


def _frequency_stats(z, quiet, sampling_hz: float, xp):
    """(n, S, L) signals -> (n, S, len(FREQ_STATS)) from the power spectrum of z - mean(z)."""
    steps = z.shape[-1]
    cos, sin, freq, weight, member = _spectrum_matrices(steps, sampling_hz, _precision(z))
    centred = z - xp.mean(z, axis=-1)[..., None]
    real, imag = xp.matmul(centred, cos), xp.matmul(centred, sin)
    power = (real * real + imag * imag) * (weight / steps**2)
    total = xp.sum(power, axis=-1)
    p = power / xp.where(quiet, 1.0, total)[..., None]
    logs = xp.log(xp.where(p > 0, p, 1.0))
    entropy = -xp.sum(p * logs, axis=-1) / np.log(len(freq))
    centre = xp.sum(p * freq, axis=-1)
    offset = freq - centre[..., None]
    weighted = p * offset * offset
    spread2 = xp.sum(weighted, axis=-1) + (1e-3 * freq[1]) ** 2  # floor: a pure tone is 0/0
    skew = xp.sum(weighted * offset, axis=-1) / (spread2 * xp.sqrt(spread2))
    kurt = xp.sum(weighted * offset * offset, axis=-1) / (spread2 * spread2)
    # the frequency of the largest bin (the lowest of ties, as argmax): min and where only,
    # since TensorFlow's argmax brings an op that TFLite lacks (BitwiseAnd)
    top = power >= xp.max(power, axis=-1)[..., None]
    peak = xp.min(xp.where(top, freq, freq[-1]), axis=-1)
    shape = [xp.where(quiet, 0.0, s) for s in (entropy, centre, peak, skew, kurt)]
    return xp.concatenate([xp.stack(shape, axis=-1), xp.matmul(power, member)], axis=-1)


def _signal_stats(z, sampling_hz: float, xp):
    """(n, S, L) -> (n, S * len(SIGNAL_STATS)), signal-major."""
    centred = z - xp.mean(z, axis=-1)[..., None]
    quiet = xp.mean(centred * centred, axis=-1) <= QUIET[_precision(z)] * xp.mean(z * z, axis=-1)
    stats = xp.concatenate(
        [_time_stats(z, quiet, xp), _frequency_stats(z, quiet, sampling_hz, xp)], axis=-1
    )
    return xp.reshape(stats, (-1, z.shape[1] * len(SIGNAL_STATS)))


def _angle(a: list, b: list, xp):
    """Degrees between vectors given as 3 components (0 where either is zero)."""
    cross = [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
    norm = xp.sqrt(sum(c * c for c in cross))
    return xp.arctan2(norm, sum(u * v for u, v in zip(a, b, strict=True))) * (180 / np.pi)


def _sensor_stats(x, channels: Sequence[str], xp) -> tuple[list, list[str]]:
    """sma and axis correlations per 3-axis sensor; angles to the gravity estimate."""
    column = {name: i for i, name in enumerate(channels)}
    columns, names = [], []
    means = {}
    tiny = QUIET[_precision(x)]
    for s in _sensors(channels):
        axes = [x[:, :, column[f"{s}_{a}"]] for a in AXES]  # 3 of (n, L)
        means[s] = [xp.mean(a, axis=1) for a in axes]
        columns.append(xp.mean(sum(xp.abs(a) for a in axes), axis=1))
        names.append(f"{s}_sma")
        centred = [a - m[:, None] for a, m in zip(axes, means[s], strict=True)]
        var = [xp.mean(c * c, axis=1) for c in centred]
        quiet = [v <= tiny * xp.mean(a * a, axis=1) for v, a in zip(var, axes, strict=True)]
        for i, j in ((0, 1), (0, 2), (1, 2)):
            cov = xp.mean(centred[i] * centred[j], axis=1)
            dead = xp.logical_or(quiet[i], quiet[j])
            scale = xp.sqrt(xp.where(dead, 1.0, var[i] * var[j]))
            columns.append(xp.where(dead, 0.0, cov / scale))
            names.append(f"{s}_corr_{AXES[i]}{AXES[j]}")
    if GRAVITY in means:
        gravity = means[GRAVITY]
        zero = xp.zeros_like(gravity[0])
        for i, a in enumerate(AXES):
            axis = [zero + float(i == k) for k in range(3)]
            columns.append(_angle(gravity, axis, xp))
            names.append(f"gravity_angle_{a}")
        for s, mean in means.items():
            if s != GRAVITY:
                columns.append(_angle(mean, gravity, xp))
                names.append(f"{s}_gravity_angle")
    return columns, names


def feature_table(x, channels: Sequence[str], sampling_hz: float, xp=np):
    """The (n, F) feature table of windows x (n, steps, channels), in `x`'s precision, with
    the array namespace `xp`: NumPy (`window_features`) or `keras.ops` (`WindowFeatures`, the
    layer), so both compute the same features with the same code."""
    parts = [_signal_stats(z, sampling_hz, xp) for _, z in _signals(x, channels, sampling_hz, xp)]
    columns = _sensor_stats(x, channels, xp)[0]
    if columns:
        parts.append(xp.stack(columns, axis=-1))
    return xp.concatenate(parts, axis=-1)


def feature_names(channels: Sequence[str]) -> list[str]:
    """The names of `window_features`' columns for these channels, in order."""
    names = []
    for signals, _ in _signals(np.zeros((1, 2, len(channels))), channels, 1.0, np):
        names += [f"{signal}_{stat}" for signal in signals for stat in SIGNAL_STATS]
    return names + _sensor_stats(np.zeros((1, 1, len(channels))), channels, np)[1]


def check_spec(steps: int | None, channels: Sequence[str], sampling_hz: float) -> None:
    """Refuse windows too short for the AR fit, repeated channel names, a bad sampling rate."""
    if steps is not None and steps < 2 * (AR_ORDER + 1) - 2:
        raise ValueError(f"windows must have at least 8 steps. Received: {steps} steps")
    if len(set(channels)) != len(channels):
        raise ValueError(f"channel names must be unique. Received: {list(channels)}")
    if not (isinstance(sampling_hz, (int, float)) and sampling_hz > 0):
        raise ValueError(f"sampling_hz must be > 0. Received: sampling_hz={sampling_hz!r}")


def window_features(
    x: np.ndarray, channels: Sequence[str], sampling_hz: float = 50.0
) -> tuple[np.ndarray, list[str]]:
    """Features of each window, computed from that window alone.

    Args:
        x: raw windows, shape (windows, steps, channels); steps >= 8.
        channels: the name of each channel; `S_x`, `S_y`, `S_z` make a 3-axis sensor `S`, and a
            sensor named `total_acc` holds gravity (as in UCI HAR's `zoo.tasks.har.CHANNELS`).
        sampling_hz: samples a second, for the jerk and the frequencies. Defaults to `50.0`.

    Returns:
        (features, names): a float32 array (windows, F) and the F column names, such as
        `body_acc_x_mean` or `total_acc_corr_xy` (see the module docstring for each family).

    Raises:
        ValueError: x is not a finite (windows, steps, channels) array matching `channels`.
    """
    x = np.asarray(x)
    channels = list(channels)
    if x.ndim != 3 or x.shape[2] != len(channels):
        raise ValueError(
            f"x must be (windows, steps, {len(channels)} channels) for the {len(channels)} "
            f"channel names. Received: shape {x.shape}"
        )
    check_spec(x.shape[1], channels, sampling_hz)
    if not np.isfinite(x).all():
        raise ValueError("x must hold finite numbers; it has nan or inf")
    names = feature_names(channels)
    out = np.empty((len(x), len(names)), dtype=np.float32)
    for start in range(0, len(x), CHUNK):
        chunk = x[start : start + CHUNK].astype(np.float64)
        out[start : start + CHUNK] = feature_table(chunk, channels, sampling_hz)
    return out, names


def feature_spec(x_train: np.ndarray, channels: Sequence[str], sampling_hz: float) -> dict:
    """What a task hands a model so that it joins these features (`Task.preprocessing`'s
    `window_features`): the channel names, the sampling rate, and each feature's mean and std
    over the training windows (a std of 0 becomes 1), for the model's standardisation."""
    table, _ = window_features(x_train, channels, sampling_hz)
    stats = channel_statistics(table[:, None, :])
    return {"channels": list(channels), "sampling_hz": float(sampling_hz), **stats}


def channel_statistics(x_train: np.ndarray) -> dict[str, list[float]]:
    """Per-channel mean and std of `x_train` (a std of 0 becomes 1), for a model's
    standardisation layer. NaN steps (the padding of variable-length data) are left out."""
    mean = np.nanmean(x_train, axis=(0, 1), dtype=np.float64)
    std = np.nanstd(x_train, axis=(0, 1), dtype=np.float64)
    std[std == 0] = 1.0
    return {"mean": mean.tolist(), "std": std.tolist()}
