"""zoo.stream: a model run one step at a time gives the full model's outputs, step for step."""

from __future__ import annotations

import json
import warnings

import keras
import numpy as np
import pytest

from zoo import create_model, list_models, looks_ahead, train
from zoo import stream as stream_cli
from zoo.models import average_models, model_hyperparameters, recurrent_model
from zoo.recordings import segments
from zoo.runs import load_model, locate_run, run_task
from zoo.streaming import Streamer, StreamError, run_preprocessing

STEPS, FEATURES, OUTPUTS = 7, 3, 2
STREAMABLE = [name for name in list_models() if not looks_ahead(name)]
SMALL = {"units": 4, "filters": 3, "kernel_size": 3, "attention_size": 3}
PNG = b"\x89PNG\r\n\x1a\n"


def signal(steps=STEPS, features=FEATURES, seed=1):
    return np.random.default_rng(seed).normal(size=(steps, features)).astype("float32")


def randomize(model):
    """Every weight drawn anew (peepholes and biases too), so each of them shows in the outputs."""
    rng = np.random.default_rng(2)
    model.set_weights([rng.normal(0, 0.6, w.shape).astype("float32") for w in model.get_weights()])
    return model


def full_outputs(model, x, every=1):
    """The model on x[:t+1] for each t = every-1, 2*every-1, ...: its last step's output."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras warns about a softmax over one step
        y = np.asarray(model(x[None]))
        if y.ndim == 3:
            return y[0, :]
        return np.stack(
            [np.asarray(model(x[None, :t]))[0] for t in range(every, len(x) + 1, every)]
        )


def assert_streams(model, x=None, preprocess=(), every=1, model_x=None):
    x = signal() if x is None else x
    out = Streamer(model, preprocess).feed(x)
    expected = full_outputs(model, x if model_x is None else model_x, every)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, atol=1e-5)


def small(name):
    return {k: v for k, v in SMALL.items() if k in model_hyperparameters(name)}


@pytest.mark.parametrize("kind", ["classification", "sequence_regression"])
@pytest.mark.parametrize("name", STREAMABLE)
def test_every_unidirectional_model_streams_exactly(name, kind):
    model = create_model(name, (None, FEATURES), OUTPUTS, output_kind=kind, **small(name))
    assert_streams(randomize(model))


@pytest.mark.parametrize(
    "settings",
    [
        {"cell": "gru", "depth": 2, "dropout": 0.2, "recurrent_dropout": 0.2, "l2": 1e-3},
        {"cell": "rnn", "depth": 3, "residual": True, "pooling": "average"},
        {"cell": "lstm", "pooling": "average"},
        {"cell": "peephole", "depth": 2, "pooling": "attention", "attention_size": 3},
        {
            "cell": "lstm",
            "conv_layers": 1,
            "kernel_size": 4,
            "output_kind": "sequence_classification",
        },
    ],
    ids=["gru-depth2-dropout-l2", "rnn-residual", "lstm-average", "peephole-attention", "conv"],
)
def test_builder_settings_stream_exactly(settings):
    assert_streams(randomize(recurrent_model((None, FEATURES), OUTPUTS, units=4, **settings)))


def test_gru_reset_before_and_dilated_conv_stream_exactly():
    inputs = keras.Input((None, FEATURES))
    x = keras.layers.Conv1D(3, 2, padding="causal", dilation_rate=2)(inputs)
    x = keras.layers.GRU(4, reset_after=False, return_sequences=True)(x)
    x = keras.layers.GlobalMaxPooling1D()(x)
    assert_streams(randomize(keras.Model(inputs, keras.layers.Dense(OUTPUTS)(x))))


def test_normalization_and_framing_layers_stream_from_raw_steps():
    x = signal(steps=8)
    inputs = keras.Input((None, FEATURES))
    norm = keras.layers.Normalization(mean=[1.0, -2.0, 0.5], variance=[4.0, 0.25, 1.0])
    h = keras.layers.Reshape((-1, 2 * FEATURES))(norm(inputs))
    model = randomize(keras.Model(inputs, keras.layers.Dense(OUTPUTS)(keras.layers.LSTM(4)(h))))
    streamer = Streamer(model)
    assert (streamer.features, streamer.steps_per_output) == (FEATURES, 2)
    assert [streamer.step(v) is None for v in x[:3]] == [True, False, True]
    assert_streams(model, x, every=2)


def test_run_preprocessing_standardises_and_frames_raw_steps():
    mean, std = [1.0, -2.0, 0.5], [2.0, 0.5, 1.0]
    config = {"task": {"info": {"mean": mean, "std": std, "standardized": True, "frame_steps": 2}}}
    model = randomize(create_model("gru", (None, 2 * FEATURES), OUTPUTS, units=4))
    x = signal(steps=8)
    framed = ((x - mean) / std).astype("float32").reshape(4, 2 * FEATURES)
    assert_streams(model, x, run_preprocessing(config), model_x=framed)
    with pytest.raises(StreamError, match="per_subject"):
        run_preprocessing({"task": {"info": {"per_subject": True}}})


def test_ensemble_streams_as_the_mean_of_its_members():
    members = [
        randomize(recurrent_model((None, FEATURES), OUTPUTS, cell=cell, units=4, name=f"m{i}"))
        for i, cell in enumerate(["lstm", "gru"])
    ]
    assert_streams(average_models(members))


def test_chunks_steps_and_reset_agree():
    model = randomize(create_model("stacked_lstm", (None, FEATURES), OUTPUTS, units=4))
    x, streamer = signal(), Streamer(model)
    stepped = np.stack([streamer.step(v) for v in x])
    streamer.reset()
    chunked = np.concatenate([streamer.feed(x[:3]), streamer.feed(x[3:4]), streamer.feed(x[4:])])
    np.testing.assert_array_equal(chunked, stepped)
    streamer.reset()
    np.testing.assert_array_equal(streamer.feed(x), stepped)
    assert streamer.steps == STEPS


def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_refusals_are_one_line():
    with pytest.raises(StreamError, match="Bidirectional") as err:
        Streamer(create_model("bilstm", (None, FEATURES), OUTPUTS, units=4))
    one_line(err)
    fcn = create_model("lstm_fcn", (8, FEATURES), OUTPUTS, **small("lstm_fcn"))
    with pytest.raises(StreamError, match="'conv_1': Conv1D with padding='same'") as err:
        Streamer(fcn)  # the RNN-FCN family convolves over the whole window
    one_line(err)
    inputs = keras.Input((None, FEATURES))
    same = keras.layers.Conv1D(2, 3, padding="same")(inputs)
    with pytest.raises(StreamError, match="padding='same'") as err:
        Streamer(keras.Model(inputs, keras.layers.LSTM(2)(same)))
    one_line(err)
    attention = keras.layers.Attention()([inputs, inputs])
    with pytest.raises(StreamError, match="use_causal_mask") as err:
        Streamer(keras.Model(inputs, attention))
    one_line(err)
    last = keras.layers.Add()([inputs, keras.layers.SimpleRNN(FEATURES)(inputs)])  # broadcast
    with pytest.raises(StreamError, match="joins a sequence with a per-sample") as err:
        Streamer(keras.Model(inputs, last))
    one_line(err)
    fixed = keras.Input((STEPS, FEATURES))
    flat = keras.layers.Dense(OUTPUTS)(keras.layers.Flatten()(fixed))
    with pytest.raises(StreamError, match=r"Flatten\) has no step-by-step form") as err:
        Streamer(keras.Model(fixed, flat))
    one_line(err)
    streamer = Streamer(create_model("gru", (None, FEATURES), OUTPUTS, units=4))
    for bad in (np.zeros(FEATURES + 1), np.zeros((1, FEATURES))):
        with pytest.raises(StreamError, match="takes 3 values") as err:
            streamer.step(bad)
        one_line(err)
    with pytest.raises(StreamError, match=r"chunk is \(steps, 3\)") as err:
        streamer.feed(np.zeros((4, 2)))
    one_line(err)


def test_segments_rebuild_the_signal_cut_into_overlapping_windows():
    x = signal(steps=20, features=2)
    windows = np.stack([x[i : i + 8] for i in range(0, 13, 4)])  # 4 windows, hop 4
    windows = np.concatenate([windows, windows[:1]])  # a fifth that does not continue
    found = segments(windows, np.array([0, 0, 0, 1, 1]), np.array([7, 7, 7, 7, 7]), hop=4)
    assert [(s.first, s.last) for s in found] == [(0, 3), (4, 4)]
    np.testing.assert_array_equal(found[0].signal, x)
    assert found[0].labels.tolist() == [0] * 12 + [1] * 8


@pytest.fixture(scope="module")
def echo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("stream") / "run"
    args = ["echo", "gru", "--task-option", "series_length=900", "--units", "8", "--epochs", "1"]
    args += ["--recurrent-dropout", "0"]  # a small split's default; Keras' loop with it is slower
    args += [
        "--depth",
        "2",
    ]  # two layers: no XLA compile (zoo.fused.auto_jit_compile), seconds faster
    assert train.main([*args, "--out", str(out), "--quiet"]) == 0
    return out


@pytest.mark.slow
def test_trained_run_streams_exactly(echo_run):
    model_path, config = locate_run(echo_run)
    x = run_task(config).x_test[0]
    out = Streamer.from_run(echo_run).feed(x)
    np.testing.assert_allclose(out, full_outputs(load_model(model_path), x), atol=1e-5)


@pytest.mark.slow
def test_cli_writes_predictions_and_plot(echo_run, tmp_path, capsys):
    x = run_task(locate_run(echo_run)[1]).x_test[:2].reshape(-1, 1)
    np.savez(tmp_path / "rec.npz", x=x, y=(x[:, 0] > 0).astype(int))
    out = tmp_path / "out"
    args = [str(echo_run), "--data", str(tmp_path / "rec.npz"), "--out", str(out)]
    assert stream_cli.main([*args, "--reset-every", "15"]) == 0
    rows = (out / "stream.csv").read_text().splitlines()
    assert len(rows) == 1 + len(x) and rows[0].startswith("recording,step,time_s,predicted,label")
    assert (out / "stream.png").read_bytes()[:8] == PNG
    assert "step latency median" in capsys.readouterr().out
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_cli_refusals_are_one_line(echo_run, tmp_path, capsys):
    np.savez(tmp_path / "wide.npz", x=np.zeros((10, 2)))
    bi = tmp_path / "bi"
    bi.mkdir()
    config = json.loads((echo_run / "config.json").read_text())
    config["hyperparameters"]["model"] = "bilstm"
    (bi / "config.json").write_text(json.dumps(config))
    create_model("bilstm", (None, 1), 2, units=2).save(bi / "model.keras")
    capsys.readouterr()  # a first NativeLSTM in this process says it builds the op: not a refusal
    cases = [
        ([str(echo_run), "--data", str(tmp_path / "wide.npz")], "is (10, 2) but the run takes"),
        ([str(bi), "--data", str(tmp_path / "wide.npz")], "is bidirectional"),
        ([str(echo_run), "--data", str(tmp_path / "missing.npz")], "does not exist"),
    ]
    for argv, expected in cases:
        with pytest.raises(SystemExit) as exit_:
            stream_cli.main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and expected in err and err.count("\n") == 1, err
    assert not (echo_run / "stream").exists()
