"""Variable-length sequences: NaN padding, masking through every model, the npz layouts,
batches by length and the refusals."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from zoo import train
from zoo.buckets import LengthBatches
from zoo.models import create_model, list_models, model_hyperparameters, model_output_kinds
from zoo.tasks import DataError, get_task, pad_ragged
from zoo.tasks.base import mask_padding

PRE = {"mask": True, "mean": [0.5, -1.0], "std": [1.0, 2.0]}
# every registered model but those that cannot carry a mask (a conv front-end drops it), with
# the kinds of output each gives
MASKABLE = [
    (name, kind)
    for name in list_models()
    if name != "conv_lstm"
    for kind in ("classification", "sequence_regression")
    if kind in model_output_kinds(name)
]


def masked_settings(name: str) -> dict:
    """Small sizes; the RNN-FCN models without the dimension shuffle (it reads whole windows)."""
    sizes = {"units": 4, "filters": 4, "kernel_size": 3, "shuffle": False}
    return {k: v for k, v in sizes.items() if k in model_hyperparameters(name)}


def ragged(n: int, seed: int = 0, features: int = 2, low: int = 3, high: int = 12):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(k, features)).astype("float32") for k in rng.integers(low, high, n)]


def padded_to(x: np.ndarray, steps: int) -> np.ndarray:
    return np.pad(x, ((0, 0), (0, steps - x.shape[1]), (0, 0)), constant_values=np.nan)


@pytest.mark.parametrize(("name", "kind"), MASKABLE)
def test_padding_never_changes_a_prediction(name, kind):
    settings = masked_settings(name)
    model = create_model(name, (None, 2), 3, output_kind=kind, preprocessing=PRE, **settings)
    x = ragged(1, seed=1, low=5, high=6)[0][None]  # one sequence of 5 steps
    alone = keras.ops.convert_to_numpy(model(x))
    for steps in (6, 17):
        padded = keras.ops.convert_to_numpy(model(padded_to(x, steps)))
        if kind.startswith("sequence"):
            assert np.isfinite(padded).all()
            padded = padded[:, :5]
        np.testing.assert_allclose(padded, alone, atol=1e-5)


def test_a_model_without_the_mask_reads_padding_as_data():
    """The control: the same zero-filled padding changes an unmasked model's output."""
    model = create_model("lstm", (None, 2), 3, units=4)
    x = ragged(1, seed=1, low=5, high=6)[0][None]
    longer = np.nan_to_num(padded_to(x, 17))
    assert np.abs(keras.ops.convert_to_numpy(model(x) - model(longer))).max() > 1e-4


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"conv_layers": 1}, "conv_layers=1"),
        ({"preprocessing": {"mask": True, "frame_steps": 2}}, "frame_steps=2"),
        ({"stateful_batch": 4}, "stateful_batch=4"),
    ],
)
def test_models_that_cannot_carry_the_mask_are_refused(settings, message):
    from zoo.models import recurrent_model

    settings = {"preprocessing": {"mask": True}, **settings}
    with pytest.raises(ValueError, match="carries the mask") as err:
        recurrent_model((None, 2), 3, **settings)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "needs shuffle=False"),
        ({"shuffle": False, "preprocessing": {"mask": True, "frame_steps": 2}}, "frame_steps=2"),
    ],
)
def test_rnn_fcn_models_refuse_a_mask_they_cannot_carry(settings, message):
    """The dimension shuffle reads a whole window as one step's features, padding too."""
    settings = {"preprocessing": {"mask": True}, **settings}
    with pytest.raises(ValueError, match=message) as err:
        create_model("lstm_fcn", (12, 2), 3, **settings)
    assert "\n" not in str(err.value)


def test_pad_ragged_pads_with_nan_at_the_end_and_keeps_the_lengths():
    seqs = [np.ones((2, 3)), np.zeros((4, 3))]
    x, lengths = pad_ragged(seqs)
    assert x.shape == (2, 4, 3) and x.dtype == np.float32 and lengths.tolist() == [2, 4]
    assert np.isnan(x[0, 2:]).all() and (x[0, :2] == 1).all() and not np.isnan(x[1]).any()
    assert pad_ragged([np.arange(3.0)])[0].shape == (1, 3, 1)  # (steps,) is one feature


def save_variable(path, seed=0, sequence_targets=False, **extra):
    """A tiny npz in the safe layout: zero-padded X_* with X_*_lengths."""
    arrays = {}
    for split, n in (("train", 40), ("test", 12)):
        seqs = ragged(n, seed=seed + n)
        x, lengths = pad_ragged(seqs)
        if sequence_targets:
            y = (np.nan_to_num(x[..., 0]) > 0).astype("int64")
        else:
            y = np.array([int(s[:, 0].sum() > 0) for s in seqs])
        arrays.update({f"X_{split}": np.nan_to_num(x), f"X_{split}_lengths": lengths})
        arrays[f"y_{split}"] = y
    arrays.update(extra)
    np.savez(path, **arrays)
    return arrays


def test_npz_layouts_give_the_same_task_with_statistics_of_the_real_steps(tmp_path):
    arrays = save_variable(tmp_path / "lengths.npz")
    task = get_task("npz", data=tmp_path / "lengths.npz", val_fraction=0.25)
    real = task.x_train[~np.isnan(task.x_train).all(-1)]  # the real steps, padding left out
    assert len(real) < task.x_train.shape[0] * task.x_train.shape[1]
    np.testing.assert_allclose(task.preprocessing["mean"], real.mean(0), rtol=1e-6)
    np.testing.assert_allclose(task.preprocessing["std"], real.std(0), rtol=1e-6)
    assert task.preprocessing["mask"] and task.w_train is None

    objects = {}
    for split in ("train", "test"):
        seqs = np.empty(len(arrays[f"X_{split}"]), dtype=object)
        seqs[:] = [x[:k] for x, k in zip(arrays[f"X_{split}"], arrays[f"X_{split}_lengths"],
                                         strict=True)]  # fmt: skip
        objects.update({f"X_{split}": seqs, f"y_{split}": arrays[f"y_{split}"]})
    np.savez(tmp_path / "ragged.npz", **objects)
    with pytest.raises(DataError, match="object array.*allow_pickle=true"):
        get_task("npz", data=tmp_path / "ragged.npz")
    again = get_task("npz", data=tmp_path / "ragged.npz", val_fraction=0.25, allow_pickle=True)
    listed = get_task("npz", data={k: list(v) if k.startswith("X") else v
                                   for k, v in objects.items()}, val_fraction=0.25)  # fmt: skip
    for other in (again, listed):
        for split in ("train", "val", "test"):
            np.testing.assert_array_equal(other.split(split)[0], task.split(split)[0])
            np.testing.assert_array_equal(other.split(split)[1], task.split(split)[1])


def test_per_step_targets_weigh_zero_on_the_padding(tmp_path):
    save_variable(tmp_path / "steps.npz", sequence_targets=True)
    task = get_task("npz", data=tmp_path / "steps.npz")
    x, y, w = task.split("train")
    assert task.output_kind == "sequence_classification"
    np.testing.assert_array_equal(w, (~np.isnan(x).all(-1)).astype("float32"))
    # the loss of a padded batch with those weights is the loss of its real steps alone
    model = create_model("gru", task.input_shape, 2, units=4, output_kind=task.output_kind,
                         preprocessing=task.preprocessing)  # fmt: skip
    model.compile(loss=task.loss)
    k = int(w[0].sum())
    alone = model.evaluate(x[:1, :k], y[:1, :k], verbose=0)
    padded = model.evaluate(x[:1], y[:1], sample_weight=w[:1], verbose=0)
    assert padded == pytest.approx(alone, rel=1e-5)


def test_length_batches_cut_each_batch_to_its_longest_sequence():
    x, lengths = pad_ragged(ragged(50, high=30))
    y = np.arange(50)
    batches = LengthBatches(x, y, batch_size=8, seed=1)
    seen = []
    for i in range(len(batches)):
        bx, by = batches[i]
        assert bx.shape[1] == lengths[by].max() and len(by) <= 8
        seen += by.tolist()
    assert sorted(seen) == list(range(50))
    spread = [np.ptp(lengths[batches[i][1]]) for i in range(len(batches))]
    assert np.mean(spread) < np.ptp(lengths) / 2  # sorted by length: similar lengths together
    steps = np.nan_to_num(x[..., 0]) > 0  # per-step targets and weights are cut with the inputs
    bx, by, bw = LengthBatches(x, steps, steps.astype("float32"), batch_size=8)[0]
    assert by.shape == bw.shape == bx.shape[:2]


@pytest.mark.slow
def test_training_end_to_end_and_the_saved_model_still_masks(tmp_path):
    data = tmp_path / "mine.npz"
    arrays = save_variable(data)
    out = tmp_path / "run"
    argv = ["npz", "lstm", "--data", str(data), "--units", "4", "--epochs", "2", "--quiet"]
    argv += ["--recurrent-dropout", "0"]  # a small split's default; Keras' loop with it is slower
    assert train.main([*argv, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    model = keras.models.load_model(out / "model.keras")
    x, lengths = arrays["X_test"], arrays["X_test_lengths"]
    x = mask_padding(x, lengths)  # the file's zero padding as NaN: what the model masks
    labels = model.predict(x, verbose=0).argmax(-1)
    assert int((labels != arrays["y_test"]).sum()) == metrics["errors"]
    one = x[:1, : lengths[0]]
    np.testing.assert_allclose(model.predict(padded_to(one, 25), verbose=0),
                               model.predict(one, verbose=0), atol=1e-5)  # fmt: skip


def bad_files(tmp_path):
    """(file, extra argv, message) for each refusal."""
    x = np.zeros((4, 6, 2), "float32")
    y = np.zeros(4, "int64")
    good = {"X_train": x, "y_train": y, "X_test": x, "y_test": y}
    two = np.empty(2, dtype=object)
    two[:] = [np.zeros((3, 2)), np.zeros((5, 3))]
    nan = x.copy()
    nan[1, 2, 0] = np.nan  # inside sample 1's 4 real steps
    cases = {
        "features": (
            {**good, "X_train": two, "y_train": y[:2]},
            ["--task-option", "allow_pickle=true"],
            "sequence 0 has 2, sequence 1 has 3",
        ),  # fmt: skip
        "pickle": ({**good, "X_train": two, "y_train": y[:2]}, [], "allow_pickle=true"),
        "zero": ({**good, "X_train_lengths": np.array([1, 0, 2, 3])}, [], "in 1..6"),
        "long": ({**good, "X_test_lengths": np.array([1, 7, 2, 3])}, [], "Received: 7"),
        "size": ({**good, "X_train_lengths": np.array([1, 2])}, [], "must be 4 integers"),
        "nan": (
            {**good, "X_train": nan, "X_train_lengths": np.array([4, 4, 4, 4])},
            [],
            "X_train (real steps) must hold finite numbers; sample 1",
        ),  # fmt: skip
        "orphan": ({**good, "X_val_lengths": np.array([1])}, [], "X_val_lengths has no X"),
    }
    for name, (arrays, extra, message) in cases.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
        yield tmp_path / f"{name}.npz", extra, message


@pytest.mark.parametrize("case", range(7))
def test_bad_variable_length_data_is_one_line_and_leaves_nothing(case, tmp_path, capsys):
    files = tmp_path / "files"
    files.mkdir()
    path, extra, message = list(bad_files(files))[case]
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        train.main(["npz", "lstm", "--data", str(path), *extra, "--out", str(out), "--quiet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err and "Traceback" not in err
    assert not out.exists()


def test_padding_after_the_length_may_hold_anything(tmp_path, capsys):
    """NaN (or any value) after a sample's length is padding, not data: accepted; a conv
    front-end on variable-length data is refused in one line."""
    x = np.full((30, 6, 2), np.nan, "float32")
    x[:, :2] = 1.0
    y = np.arange(30) % 2
    np.savez(tmp_path / "d.npz", X_train=x, X_train_lengths=np.full(30, 2), y_train=y,
             X_test=x[:4], X_test_lengths=np.full(4, 2), y_test=y[:4])  # fmt: skip
    task = get_task("npz", data=tmp_path / "d.npz")
    assert task.info["lengths_train"] == [2, 2]
    with pytest.raises(SystemExit):
        train.main(["npz", "conv_lstm", "--data", str(tmp_path / "d.npz"), "--quiet",
                    "--out", str(tmp_path / "run")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "carries the mask" in err and not (tmp_path / "run").exists()


def test_xla_auto_stays_off_for_variable_length():
    """Batches by length come in many shapes: XLA would compile once for each."""
    from zoo.xla import use_xla

    # gru: a single layer that XLA compiles (the zoo's lstm runs its own C++ op instead)
    masked = create_model("gru", (None, 2), 3, units=4, preprocessing=PRE)
    plain = create_model("gru", (None, 2), 3, units=4)
    assert use_xla(masked, "auto", 10**9) is not True
    assert use_xla(plain, "auto", 10**9) in (True, "auto")  # "auto": not TensorFlow on CPU
