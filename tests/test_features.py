"""zoo.features: names and shapes, each family on a signal whose answer is known, per-window."""

from __future__ import annotations

import numpy as np
import pytest

from zoo import features as zf
from zoo.tasks.har import CHANNELS

HZ, STEPS = 50.0, 128
T = np.arange(STEPS) / HZ


def windows(**signals) -> np.ndarray:
    """One (1, 128, 9) window: the named HAR channels set, the others 0."""
    x = np.zeros((1, STEPS, len(CHANNELS)))
    for name, values in signals.items():
        x[0, :, CHANNELS.index(name)] = values
    return x


def features(x: np.ndarray, channels=CHANNELS) -> dict[str, float]:
    values, names = zf.window_features(x, channels, HZ)
    return dict(zip(names, values[0].astype(float), strict=True))


def test_shapes_and_names():
    x = np.random.default_rng(0).normal(size=(5, STEPS, 9))
    values, names = zf.window_features(x, CHANNELS)
    assert values.shape == (5, len(names)) and values.dtype == np.float32
    assert np.isfinite(values).all()
    assert len(set(names)) == len(names) == len(zf.feature_names(CHANNELS))
    signals = 9 + 3 + 2 * 4  # channels, magnitudes, body_acc and body_gyro jerks with magnitude
    assert len(names) == signals * len(zf.SIGNAL_STATS) + 3 * 4 + 3 + 2
    for name in ("body_acc_x_mean", "total_acc_mag_band8", "body_gyro_jerk_mag_ar4"):
        assert name in names
    assert "total_acc_jerk_x_mean" not in names  # no jerk of gravity
    assert {"body_acc_corr_yz", "total_acc_sma", "gravity_angle_z", "body_gyro_gravity_angle"} <= {
        *names
    }


def test_other_channels_no_gravity():
    """Any 3-axis sensor works; without total_acc there are no angles; a lone channel is a
    signal."""
    channels = ["acc_x", "acc_y", "acc_z", "pressure"]
    x = np.random.default_rng(1).normal(size=(2, 64, 4))
    values, names = zf.window_features(x, channels, 100.0)
    assert values.shape == (2, len(names))
    assert "acc_jerk_mag_std" in names and "pressure_iqr" in names and "acc_corr_xz" in names
    assert not any("angle" in n for n in names)


def test_pure_sine():
    """A sine on a bin of the FFT: its frequency, its power A^2 / 2 in the right band."""
    k, amplitude = 10, 0.5
    hz = k * HZ / STEPS  # 3.90625 Hz: bin 10, band 2 of 8 (3.125-6.25 Hz)
    f = features(windows(body_acc_x=amplitude * np.sin(2 * np.pi * hz * T)))
    assert f["body_acc_x_max_freq"] == pytest.approx(hz, abs=1e-4)
    assert f["body_acc_x_mean_freq"] == pytest.approx(hz, abs=1e-4)
    assert f["body_acc_x_entropy"] == pytest.approx(0.0, abs=1e-4)
    assert f["body_acc_x_band2"] == pytest.approx(amplitude**2 / 2, rel=1e-5)
    bands = [f[f"body_acc_x_band{b}"] for b in range(1, 9)]
    assert sum(bands) == pytest.approx(f["body_acc_x_std"] ** 2, rel=1e-5)
    assert f["body_acc_x_std"] == pytest.approx(amplitude / np.sqrt(2), rel=1e-5)
    assert f["body_acc_x_energy"] == pytest.approx(amplitude**2 / 2, rel=1e-5)
    assert f["body_acc_x_mean"] == pytest.approx(0.0, abs=1e-6)
    assert f["body_acc_x_max"] == pytest.approx(amplitude, rel=1e-3)
    assert f["body_acc_x_min"] == pytest.approx(-amplitude, rel=1e-3)
    # the jerk of a sine is a sine of the same frequency, amplitude times 2 pi f (about)
    assert f["body_acc_jerk_x_max_freq"] == pytest.approx(hz, abs=HZ / (STEPS - 1))


def test_two_tones_spectrum_shape():
    """Two equal tones: centroid halfway, a symmetric distribution (skew 0) on two points
    (kurtosis 1)."""
    f1, f2 = 8 * HZ / STEPS, 24 * HZ / STEPS
    signal = np.sin(2 * np.pi * f1 * T) + np.sin(2 * np.pi * f2 * T)
    f = features(windows(body_gyro_y=signal))
    assert f["body_gyro_y_mean_freq"] == pytest.approx((f1 + f2) / 2, abs=1e-4)
    assert f["body_gyro_y_spec_skew"] == pytest.approx(0.0, abs=1e-5)
    assert f["body_gyro_y_spec_kurt"] == pytest.approx(1.0, abs=1e-4)
    assert f["body_gyro_y_entropy"] == pytest.approx(np.log(2) / np.log(STEPS // 2 + 1), abs=1e-5)


def test_constant():
    """A constant: std, mad, iqr 0, energy value^2, and no shape (ar, spectrum, corr 0)."""
    value = -0.7
    f = features(windows(body_acc_x=np.full(STEPS, value), body_acc_y=np.full(STEPS, 2.0)))
    for stat in ("mean", "max", "min"):
        assert f[f"body_acc_x_{stat}"] == pytest.approx(value)
    for stat in ("std", "mad", "iqr", "entropy", "mean_freq", "max_freq", "spec_skew", "ar1"):
        assert f[f"body_acc_x_{stat}"] == 0.0, stat
    assert f["body_acc_x_energy"] == pytest.approx(value**2)
    assert f["body_acc_x_band1"] == pytest.approx(0.0, abs=1e-12)
    assert f["body_acc_corr_xy"] == 0.0
    assert f["body_acc_sma"] == pytest.approx(abs(value) + 2.0)
    assert f["body_acc_mag_mean"] == pytest.approx(np.hypot(value, 2.0))
    assert f["body_acc_jerk_x_energy"] == 0.0


def test_robust_statistics_match_numpy():
    rng = np.random.default_rng(2)
    signal = rng.standard_t(3, size=STEPS)
    f = features(windows(total_acc_z=signal))
    median = np.median(signal)
    assert f["total_acc_z_mad"] == pytest.approx(np.median(np.abs(signal - median)), rel=1e-5)
    q25, q75 = np.quantile(signal, [0.25, 0.75])
    assert f["total_acc_z_iqr"] == pytest.approx(q75 - q25, rel=1e-5)
    assert f["total_acc_z_max"] == pytest.approx(signal.max(), rel=1e-6)


def test_autoregression_recovers_coefficients():
    """A noise-free AR(4) (two slowly decaying oscillations) fits exactly."""
    roots = [0.98 * np.exp(1j * 0.3), 0.98 * np.exp(-1j * 0.3)]
    roots += [0.95 * np.exp(1j * 1.2), 0.95 * np.exp(-1j * 1.2)]
    coefficients = -np.poly(roots).real[1:]  # z_t = a1 z_(t-1) + ... + a4 z_(t-4)
    z = [1.0, -0.5, 0.3, 0.8]
    for _ in range(STEPS - 4):
        z.append(float(np.dot(coefficients, z[-1:-5:-1])))
    f = features(windows(body_gyro_z=np.array(z) + 0.25))  # an offset: the intercept takes it
    got = [f[f"body_gyro_z_ar{k}"] for k in range(1, 5)]
    np.testing.assert_allclose(got, coefficients, atol=1e-4)


def test_correlation_between_axes():
    signal = np.sin(2 * np.pi * 1.3 * T) + 0.1 * T
    f = features(windows(body_gyro_x=signal, body_gyro_y=2 * signal + 1, body_gyro_z=-signal))
    assert f["body_gyro_corr_xy"] == pytest.approx(1.0, abs=1e-6)
    assert f["body_gyro_corr_xz"] == pytest.approx(-1.0, abs=1e-6)
    assert f["body_gyro_corr_yz"] == pytest.approx(-1.0, abs=1e-6)


def test_jerk_of_a_ramp():
    """body_acc rising by 0.01 a step: jerk 0.01 * 50 = 0.5 a second, constant."""
    f = features(windows(body_acc_z=0.01 * np.arange(STEPS)))
    assert f["body_acc_jerk_z_mean"] == pytest.approx(0.5, rel=1e-5)
    assert f["body_acc_jerk_z_std"] == pytest.approx(0.0, abs=1e-6)
    assert f["body_acc_jerk_mag_mean"] == pytest.approx(0.5, rel=1e-5)


def test_angles_to_gravity():
    noise = 0.01 * np.sin(2 * np.pi * 2 * T)  # movement around gravity: the mean is gravity
    f = features(windows(total_acc_x=1.0 + noise, body_acc_y=np.full(STEPS, 0.2)))
    assert f["gravity_angle_x"] == pytest.approx(0.0, abs=1e-3)
    assert f["gravity_angle_y"] == pytest.approx(90.0, abs=1e-3)
    assert f["gravity_angle_z"] == pytest.approx(90.0, abs=1e-3)
    assert f["body_acc_gravity_angle"] == pytest.approx(90.0, abs=1e-3)
    upside_down = features(windows(total_acc_z=np.full(STEPS, -1.0), body_acc_z=0.1 + noise))
    assert upside_down["gravity_angle_z"] == pytest.approx(180.0, abs=1e-3)
    assert upside_down["body_acc_gravity_angle"] == pytest.approx(180.0, abs=1e-3)
    tilted = features(windows(total_acc_x=np.full(STEPS, 1.0), total_acc_y=np.full(STEPS, 1.0)))
    assert tilted["gravity_angle_x"] == pytest.approx(45.0, abs=1e-3)


def test_a_window_alone_equals_the_window_in_a_batch(monkeypatch):
    """No feature reads another window: alone, in a batch, across chunk boundaries, equal."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(7, STEPS, 9)) * rng.uniform(0.01, 3.0, size=(7, 1, 9))
    x[4] = 0.3  # a constant window among moving ones
    batch, _ = zf.window_features(x, CHANNELS)
    monkeypatch.setattr(zf, "CHUNK", 3)
    chunked, _ = zf.window_features(x, CHANNELS)
    alone = np.concatenate([zf.window_features(x[i : i + 1], CHANNELS)[0] for i in range(7)])
    np.testing.assert_allclose(chunked, batch, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(alone, batch, rtol=1e-6, atol=1e-6)
    flipped, _ = zf.window_features(x[::-1], CHANNELS)
    np.testing.assert_allclose(flipped[::-1], batch, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("x", "channels", "message"),
    [
        (np.zeros((2, STEPS)), CHANNELS, "must be \\(windows, steps, 9 channels\\)"),
        (np.zeros((2, STEPS, 8)), CHANNELS, "Received: shape \\(2, 128, 8\\)"),
        (np.zeros((2, 5, 9)), CHANNELS, "at least 8 steps"),
        (np.full((2, STEPS, 9), np.nan), CHANNELS, "nan or inf"),
        (np.zeros((1, STEPS, 2)), ["a", "a"], "unique"),
    ],
)
def test_refusals(x, channels, message):
    with pytest.raises(ValueError, match=message):
        zf.window_features(x, channels)
    with pytest.raises(ValueError, match="sampling_hz"):
        zf.window_features(np.zeros((1, STEPS, 9)), CHANNELS, 0.0)
