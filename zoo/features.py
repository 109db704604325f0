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
QUIET = 1e-20  # variance below QUIET * energy: a constant signal (no shape, no spectrum)


def _sensors(channels: Sequence[str]) -> list[str]:
    """The prefixes S with S_x, S_y and S_z all among the channels, in channel order."""
    found = []
    for name in channels:
        prefix = name[:-2]
        if name.endswith("_x") and all(f"{prefix}_{a}" in channels for a in AXES):
            found.append(prefix)
    return found


def _signals(x: np.ndarray, channels: Sequence[str], sampling_hz: float):
    """(names, (n, S, steps) array) and (names, (n, S, steps - 1) array) of the jerk signals."""
    sensors = _sensors(channels)
    column = {name: i for i, name in enumerate(channels)}
    names = list(channels)
    full = [x[:, :, i] for i in range(len(channels))]
    jerk_names, jerk = [], []
    for s in sensors:
        axes = np.stack([x[:, :, column[f"{s}_{a}"]] for a in AXES], axis=1)
        names.append(f"{s}_mag")
        full.append(np.sqrt((axes**2).sum(axis=1)))
        if s != GRAVITY:
            d = np.diff(axes, axis=-1) * sampling_hz
            jerk_names += [f"{s}_jerk_{a}" for a in AXES] + [f"{s}_jerk_mag"]
            jerk += [d[:, 0], d[:, 1], d[:, 2], np.sqrt((d**2).sum(axis=1))]
    groups = [(names, np.stack(full, axis=1))]
    if jerk:
        groups.append((jerk_names, np.stack(jerk, axis=1)))
    return groups


def _time_stats(z: np.ndarray, quiet: np.ndarray) -> np.ndarray:
    """(n, S, L) signals -> (n, S, len(TIME_STATS))."""
    mean = z.mean(axis=-1)
    centred = z - mean[..., None]
    ordered = np.sort(z, axis=-1)  # one sort for the median, quartiles, max and min
    median = _quantile(ordered, 0.5)
    stats = [
        mean,
        np.where(quiet, 0.0, np.sqrt((centred**2).mean(axis=-1))),  # not rounding noise
        _quantile(np.sort(np.abs(z - median[..., None]), axis=-1), 0.5),
        ordered[..., -1],
        ordered[..., 0],
        (z**2).mean(axis=-1),
        _quantile(ordered, 0.75) - _quantile(ordered, 0.25),
    ]
    return np.concatenate([np.stack(stats, axis=-1), _autoregression(centred, quiet)], axis=-1)


def _quantile(ordered: np.ndarray, q: float) -> np.ndarray:
    """The q-quantile of sorted values along the last axis (NumPy's default, linear)."""
    position = q * (ordered.shape[-1] - 1)
    low = int(np.floor(position))
    high = min(low + 1, ordered.shape[-1] - 1)
    return ordered[..., low] + (position - low) * (ordered[..., high] - ordered[..., low])


def _autoregression(centred: np.ndarray, quiet: np.ndarray) -> np.ndarray:
    """Least-squares AR(4) coefficients with an intercept, every window and signal at once.

    z_t = a1 z_(t-1) + ... + a4 z_(t-4) + c; a tiny ridge keeps signals of lower rank (a pure
    sine) solvable; quiet (constant) signals get 0.
    """
    m, steps = AR_ORDER, centred.shape[-1]
    cols = [centred[..., m - k : steps - k] for k in range(m + 1)]  # z_(t-k); k = 0 the target
    # moments of (target, lags, 1) over t from products of shifted views (no lagged copy)
    moment = np.empty(centred.shape[:-1] + (m + 2, m + 2))
    for i in range(m + 1):
        for j in range(i, m + 1):
            moment[..., i, j] = moment[..., j, i] = (cols[i] * cols[j]).sum(axis=-1)
        moment[..., i, m + 1] = moment[..., m + 1, i] = cols[i].sum(axis=-1)
    moment[..., m + 1, m + 1] = steps - m
    gram, rhs = moment[..., 1:, 1:], moment[..., 1:, :1]
    ridge = 1e-9 * np.trace(gram[..., :-1, :-1], axis1=-2, axis2=-1) / AR_ORDER
    gram += ridge[..., None, None] * np.eye(AR_ORDER + 1)
    gram[quiet] = np.eye(AR_ORDER + 1)  # nothing to fit; keeps the solve regular
    coef = np.linalg.solve(gram, rhs)[..., :AR_ORDER, 0]
    return np.where(quiet[..., None], 0.0, coef)


def _frequency_stats(z: np.ndarray, quiet: np.ndarray, sampling_hz: float) -> np.ndarray:
    """(n, S, L) signals -> (n, S, len(FREQ_STATS)) from the power spectrum of z - mean(z)."""
    steps = z.shape[-1]
    centred = z - z.mean(axis=-1, keepdims=True)
    spectrum = np.fft.rfft(centred, axis=-1)
    power = (spectrum.real**2 + spectrum.imag**2) / steps**2
    power[..., 1 : (steps + 1) // 2] *= 2  # one-sided: every bin but 0 and Nyquist counted twice
    freq = np.fft.rfftfreq(steps, d=1.0 / sampling_hz)
    total = power.sum(axis=-1)
    p = power / np.where(quiet, 1.0, total)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=-1) / np.log(len(freq))
    centre = (p * freq).sum(axis=-1)
    offset = freq - centre[..., None]
    weighted = p * offset**2  # products, not pow(): integer powers of arrays are slow
    spread2 = weighted.sum(axis=-1) + (1e-3 * freq[1]) ** 2  # floor: a pure tone is 0/0
    skew = (weighted * offset).sum(axis=-1) / spread2**1.5
    kurt = (weighted * offset**2).sum(axis=-1) / spread2**2
    peak = freq[power.argmax(axis=-1)]
    band = np.minimum((freq / (sampling_hz / 2) * BANDS).astype(int), BANDS - 1)
    bands = np.stack([power[..., band == b].sum(axis=-1) for b in range(BANDS)], axis=-1)
    shape = np.stack([entropy, centre, peak, skew, kurt], axis=-1)
    return np.concatenate([np.where(quiet[..., None], 0.0, shape), bands], axis=-1)


def _signal_stats(z: np.ndarray, sampling_hz: float) -> np.ndarray:
    """(n, S, L) -> (n, S * len(SIGNAL_STATS)), signal-major."""
    quiet = z.var(axis=-1) <= QUIET * (z**2).mean(axis=-1)
    stats = np.concatenate(
        [_time_stats(z, quiet), _frequency_stats(z, quiet, sampling_hz)], axis=-1
    )
    return stats.reshape(len(z), -1)


def _angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Degrees between vectors along the last axis (0 where either is zero)."""
    cross = np.linalg.norm(np.cross(a, b), axis=-1)
    return np.degrees(np.arctan2(cross, (a * b).sum(axis=-1)))


def _sensor_stats(x: np.ndarray, channels: Sequence[str]) -> tuple[list[np.ndarray], list[str]]:
    """sma and axis correlations per 3-axis sensor; angles to the gravity estimate."""
    column = {name: i for i, name in enumerate(channels)}
    columns, names = [], []
    means = {}
    for s in _sensors(channels):
        axes = x[:, :, [column[f"{s}_{a}"] for a in AXES]]  # (n, L, 3)
        means[s] = axes.mean(axis=1)
        columns.append(np.abs(axes).sum(axis=-1).mean(axis=-1))
        names.append(f"{s}_sma")
        centred = axes - means[s][:, None, :]
        std = np.sqrt((centred**2).mean(axis=1))
        quiet = std**2 <= QUIET * (axes**2).mean(axis=1)
        for i, j in ((0, 1), (0, 2), (1, 2)):
            cov = (centred[..., i] * centred[..., j]).mean(axis=1)
            dead = quiet[:, i] | quiet[:, j]
            columns.append(np.where(dead, 0.0, cov / np.where(dead, 1.0, std[:, i] * std[:, j])))
            names.append(f"{s}_corr_{AXES[i]}{AXES[j]}")
    if GRAVITY in means:
        gravity = means[GRAVITY]
        for i, a in enumerate(AXES):
            columns.append(_angle(gravity, np.eye(3)[i]))
            names.append(f"gravity_angle_{a}")
        for s, mean in means.items():
            if s != GRAVITY:
                columns.append(_angle(mean, gravity))
                names.append(f"{s}_gravity_angle")
    return columns, names


def feature_names(channels: Sequence[str]) -> list[str]:
    """The names of `window_features`' columns for these channels, in order."""
    names = []
    for signals, _ in _signals(np.zeros((1, 2, len(channels))), channels, 1.0):
        names += [f"{signal}_{stat}" for signal in signals for stat in SIGNAL_STATS]
    return names + _sensor_stats(np.zeros((1, 1, len(channels))), channels)[1]


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
    if x.shape[1] < 2 * (AR_ORDER + 1) - 2:
        raise ValueError(f"windows must have at least 8 steps. Received: {x.shape[1]} steps")
    if len(set(channels)) != len(channels):
        raise ValueError(f"channel names must be unique. Received: {channels}")
    if not sampling_hz > 0:
        raise ValueError(f"sampling_hz must be > 0. Received: sampling_hz={sampling_hz}")
    if not np.isfinite(x).all():
        raise ValueError("x must hold finite numbers; it has nan or inf")
    names = feature_names(channels)
    out = np.empty((len(x), len(names)), dtype=np.float32)
    for start in range(0, len(x), CHUNK):
        chunk = x[start : start + CHUNK].astype(np.float64)
        parts = [_signal_stats(z, sampling_hz) for _, z in _signals(chunk, channels, sampling_hz)]
        out[start : start + CHUNK] = np.column_stack(parts + _sensor_stats(chunk, channels)[0])
    return out, names
