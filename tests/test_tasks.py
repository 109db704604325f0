"""The synthetic and file tasks: shapes, seeds, splits, targets, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from zoo import DataError, Task, get_task, list_tasks


def _splits(task: Task):
    return [task.split(s) for s in ("train", "val", "test")]


def test_get_task_drops_none_options_and_rejects_unknown_names():
    assert get_task("echo", series_length=None, seed=None).info["series_length"] == 50_000
    with pytest.raises(KeyError, match="Did you mean: 'echo'"):
        get_task("ecko")
    assert list_tasks("*o*") == sorted(n for n in list_tasks() if "o" in n)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("echo", {"series_length": 3_000}),
        ("count_ones", {"length": 8, "train_size": 100, "val_size": 20}),
        ("sine", {"train_size": 50, "val_size": 10, "test_size": 10}),
        ("random_walk", {"length": 500}),
    ],
)
def test_synthetic_tasks_are_seeded(name, options):
    a, b = get_task(name, **options), get_task(name, **options)
    c = get_task(name, seed=1, **options)
    for (xa, ya, _), (xb, yb, _) in zip(_splits(a), _splits(b), strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a.x_train, c.x_train)
    assert a.x_train.dtype == np.float32


def test_echo_targets_are_the_input_shifted_and_unknowable_steps_weigh_nothing():
    task = get_task("echo", series_length=1_500, window=15, echo_step=3)
    assert task.output_kind == "sequence_classification" and task.input_shape == (15, 1)
    stream = np.concatenate([task.x_train, task.x_val, task.x_test])[..., 0].ravel()
    target = np.concatenate([task.y_train, task.y_val, task.y_test]).ravel()
    np.testing.assert_array_equal(target[3:], stream[:-3])
    np.testing.assert_array_equal(target[:3], 0)
    assert np.all(task.w_train[:, :3] == 0) and np.all(task.w_train[:, 3:] == 1)
    assert len(task.x_train) == 80 and len(task.x_val) == 10 and len(task.x_test) == 10


def test_count_ones_defaults_match_the_tutorial():
    task = get_task("count_ones")
    assert task.input_shape == (20, 1) and task.num_outputs == 21
    assert len(task.x_train) + len(task.x_val) == 10_000
    assert len(task.x_test) == 1_038_576
    np.testing.assert_array_equal(task.y_test[:1000], task.x_test[:1000, :, 0].sum(axis=1))
    every = np.concatenate([task.x_train, task.x_val, task.x_test])[..., 0]
    as_numbers = every @ (2 ** np.arange(19, -1, -1))
    assert len(np.unique(as_numbers)) == 2**20  # every string exactly once


def test_sine_targets_are_the_next_step():
    task = get_task("sine", train_size=20, val_size=5, test_size=5)
    assert task.output_kind == "sequence_regression" and task.causal
    np.testing.assert_allclose(task.y_train[:, :-1], task.x_train[:, 1:])
    baseline = np.mean((task.y_test - task.x_test) ** 2)
    assert task.info["persistence_mse_test"] == pytest.approx(baseline)


def test_random_walk_is_relative_to_the_last_value_and_split_in_time():
    task = get_task("random_walk", length=1_000, steps=20)
    assert task.output_kind == "regression" and task.num_outputs == 1
    np.testing.assert_array_equal(task.x_train[:, -1, 0], 0)  # relative to the last value
    assert task.info["persistence_mse_test"] == pytest.approx(np.mean(task.y_test**2))
    n = len(task.x_train) + len(task.x_val) + len(task.x_test)
    assert n < 1_000 - 20  # windows across split borders were dropped


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("echo", {"window": 0}, "window must be a positive integer"),
        ("echo", {"echo_step": 20, "window": 15}, "echo_step must be below window"),
        ("count_ones", {"length": 4, "train_size": 100}, "train_size"),
        ("random_walk", {"length": 50}, "length must be at least"),
    ],
)
def test_bad_task_options_are_one_line_errors(name, options, message):
    with pytest.raises(ValueError, match=message) as info:
        get_task(name, **options)
    assert "\n" not in str(info.value)


def test_digits_is_row_by_row_and_stratified():
    task = get_task("digits")
    assert task.input_shape == (8, 8) and task.num_outputs == 10
    assert sum(len(x) for x, _, _ in _splits(task)) == 1797
    assert set(np.unique(task.y_test)) == set(range(10))
    assert 0.0 <= task.x_train.min() and task.x_train.max() <= 1.0


def _mnist_like(path, n_train=60, n_test=20):
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, size=n_train, dtype=np.uint8),
        x_test=rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        y_test=rng.integers(0, 10, size=n_test, dtype=np.uint8),
    )
    return path


def test_mnist_reads_a_file_in_the_keras_format(tmp_path):
    task = get_task("mnist", data=_mnist_like(tmp_path / "mnist.npz"), val_size=10)
    assert task.input_shape == (28, 28) and task.num_outputs == 10
    assert (len(task.x_train), len(task.x_val), len(task.x_test)) == (50, 10, 20)
    assert task.x_train.max() <= 1.0 and task.y_train.dtype == np.int32


def test_mnist_bad_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        get_task("mnist", data=tmp_path / "missing.npz")
    np.savez(tmp_path / "partial.npz", x_train=np.zeros((3, 28, 28)))
    with pytest.raises(DataError, match="lacks x_test, y_test, y_train"):
        get_task("mnist", data=tmp_path / "partial.npz")


def _user_npz(path, y_kind="int", with_val=False):
    rng = np.random.default_rng(0)
    arrays = {"X_train": rng.normal(3, 2, size=(40, 10, 2)), "X_test": rng.normal(size=(12, 10, 2))}
    if y_kind == "int":
        arrays.update(y_train=rng.integers(0, 3, 40), y_test=rng.integers(0, 3, 12))
    elif y_kind == "int_seq":
        arrays.update(y_train=rng.integers(0, 3, (40, 10)), y_test=rng.integers(0, 3, (12, 10)))
    else:
        arrays.update(y_train=rng.normal(size=(40, 2)), y_test=rng.normal(size=(12, 2)))
    if with_val:
        arrays.update(X_val=arrays["X_test"][:4], y_val=arrays["y_test"][:4])
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("y_kind", "kind", "outputs"),
    [
        ("int", "classification", 3),
        ("int_seq", "sequence_classification", 3),
        ("float", "regression", 2),
    ],
)
def test_npz_reads_the_users_windows(tmp_path, y_kind, kind, outputs):
    task = get_task("npz", data=_user_npz(tmp_path / "mine.npz", y_kind))
    assert task.output_kind == kind and task.num_outputs == outputs
    # 40 windows: 10 held out for validation (10% would be 4, too few to score anything)
    assert len(task.x_train) == 30 and len(task.x_val) == 10 and len(task.x_test) == 12
    assert task.input_shape == (10, 2)
    np.testing.assert_allclose(task.preprocessed().x_train.mean(axis=(0, 1)), 0, atol=1e-5)


def test_npz_float_targets_of_one_value_a_sample_are_one_output(tmp_path):
    """y (samples,) of floats: one regression output, shaped (samples, 1) like the model's
    output (it trained against a broadcast (samples, samples) loss, then failed in the plots)."""
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "one.npz", X_train=rng.normal(size=(40, 5, 2)), y_train=rng.normal(size=40),
        X_test=rng.normal(size=(6, 5, 2)), y_test=rng.normal(size=6),
    )  # fmt: skip
    task = get_task("npz", data=tmp_path / "one.npz")
    assert task.output_kind == "regression" and task.num_outputs == 1
    assert task.y_train.shape == (30, 1) and task.y_val.shape == (10, 1)
    assert task.y_test.shape == (6, 1)


def test_npz_uses_the_given_validation_split(tmp_path):
    task = get_task("npz", data=_user_npz(tmp_path / "mine.npz", with_val=True))
    assert len(task.x_train) == 40 and len(task.x_val) == 4


def test_npz_bad_input(tmp_path):
    with pytest.raises(DataError, match="give the file with --data"):
        get_task("npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="not a readable .npz file"):
        get_task("npz", data=tmp_path / "junk.npz")
    np.savez(tmp_path / "nox.npz", X_train=np.zeros((4, 3, 1)), y_train=np.zeros(4, int))
    with pytest.raises(DataError, match="lacks X_test, y_test; it holds X_train, y_train"):
        get_task("npz", data=tmp_path / "nox.npz")  # the file's names, as it spells them
    np.savez(
        tmp_path / "4d.npz", X_train=np.zeros((40, 3, 2, 2)), y_train=np.zeros(40, int),
        X_test=np.zeros((2, 3, 2)), y_test=np.zeros(2, int),
    )  # fmt: skip
    with pytest.raises(DataError, match=r"Received: shape=\(40, 3, 2, 2\)"):  # the file's 40
        get_task("npz", data=tmp_path / "4d.npz")
    np.savez(
        tmp_path / "labels.npz", X_train=np.zeros((20, 3, 1)), y_train=np.arange(20) % 3,
        X_test=np.zeros((3, 3, 1)), y_test=np.array([0, 7, 9]),
    )  # fmt: skip
    with pytest.raises(DataError, match=r"y_test holds labels 7, 9 that y_train does not \(its "
                       r"labels: 0, 1, 2\)"):  # fmt: skip
        get_task("npz", data=tmp_path / "labels.npz")
    np.savez(
        tmp_path / "shape.npz", X_train=np.zeros((4, 3, 1)), y_train=np.zeros(5, int),
        X_test=np.zeros((2, 3, 1)), y_test=np.zeros(2, int),
    )  # fmt: skip
    with pytest.raises(DataError, match="one target a sample"):
        get_task("npz", data=tmp_path / "shape.npz", val_fraction=0.25)
    np.savez(
        tmp_path / "features.npz", X_train=np.zeros((8, 3, 2)), y_train=np.zeros(8, int),
        X_test=np.zeros((2, 3, 5)), y_test=np.zeros(2, int),
    )  # fmt: skip
    with pytest.raises(DataError, match="features a step"):
        get_task("npz", data=tmp_path / "features.npz")


def test_npz_with_a_nan_is_refused_in_one_line(tmp_path):
    x = np.ones((12, 5, 2), "float32")
    x[10, 3, 1] = np.nan
    path = tmp_path / "nan.npz"
    np.savez(path, X_train=x, y_train=np.zeros(12, int), X_test=x[:3] * 0, y_test=np.zeros(3, int))
    with pytest.raises(DataError) as err:
        get_task("npz", data=str(path))
    assert (
        str(err.value)
        == "npz: X_train must hold finite numbers; sample 10 has NaN or inf (1 such samples)"
    )
