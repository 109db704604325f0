"""`python -m zoo.train` and `python -m zoo.evaluate` end to end on tiny tasks and real files."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from test_har import FOLDER, SMALL_FILES

from zoo import create_model, get_task, train
from zoo import evaluate as evaluate_cli
from zoo.config import RunConfig
from zoo.presets import get_preset, list_presets

NO_RECURRENT_DROPOUT = ["--recurrent-dropout", "0"]  # test speed; see run()
TINY_ECHO = ["--task-option", "series_length=900", "--units", "8", "--epochs", "2"]
PNG = b"\x89PNG\r\n\x1a\n"
# windows of 6 steps: shorter than the RNN-FCN's default kernel (8)
SHORT_WINDOWS = (
    "--task-option length=6 --task-option train_size=40 --task-option val_size=8".split()
)


def run(args: list[str], out: Path, small_data_defaults: bool = False) -> dict:
    """Train in-process; return the run folder's metrics. Recurrent dropout is off unless the
    test is about it: a small split's default turns it on, and Keras' loop with it traces and
    trains seconds slower a run."""
    if not small_data_defaults and "--recurrent-dropout" not in args:
        args = [*args, *NO_RECURRENT_DROPOUT]
    assert train.main([*args, "--out", str(out), "--quiet"]) == 0
    return json.loads((out / "metrics.json").read_text())


def assert_run_folder(out: Path, plots: list[str]) -> None:
    config = json.loads((out / "config.json").read_text())
    assert config["hyperparameters"]["seed"] == 0 and config["versions"]["keras"]
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and {"loss", "val_loss"} <= set(rows[0])
    assert keras.models.load_model(out / "model.keras").count_params() == config["parameters"]
    for name in ["training_curves.png", *plots]:
        assert (out / name).read_bytes()[:8] == PNG, name
    assert any((out / "tb").rglob("*tfevents*"))
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_echo_run_folder_holds_every_file(tmp_path, capsys):
    metrics = run(["echo", "gru", *TINY_ECHO], tmp_path / "run")
    assert_run_folder(tmp_path / "run", ["predictions.png"])
    assert metrics["epochs_run"] == 2 and 0 <= metrics["accuracy"] <= 1
    assert metrics["targets"] == 6 * 12  # 6 test windows, 12 knowable steps each
    last = capsys.readouterr().out.strip().splitlines()[-2:]
    assert last[0] == f"Run folder: {tmp_path / 'run'}"
    assert last[1].startswith("echo gru: test accuracy")


def test_classification_run_has_report_and_confusion_matrix(tmp_path):
    out = tmp_path / "run"
    metrics = run(
        ["count_ones", "lstm", "--task-option", "length=6", "--task-option", "train_size=40",
         "--task-option", "val_size=8", "--units", "8", "--epochs", "1"], out,
    )  # fmt: skip
    assert_run_folder(out, ["confusion_matrix.png"])
    matrix = metrics["confusion_matrix"]
    assert len(matrix) == 7 and sum(map(sum, matrix)) == 64 - 40
    assert set(metrics["report"]) >= {"0", "6", "macro avg"}


@pytest.mark.parametrize(
    ("task", "options"),
    [("sine", ["train_size=64", "val_size=16", "test_size=16"]), ("random_walk", ["length=400"])],
)
def test_regression_runs_plot_the_forecast_and_report_persistence(tmp_path, task, options):
    out = tmp_path / "run"
    opts = [a for o in options for a in ("--task-option", o)]
    metrics = run([task, "gru", *opts, "--units", "8", "--epochs", "1"], out)
    assert_run_folder(out, ["forecast.png"])
    assert metrics["mse"] >= 0 and metrics["persistence_mse"] > 0


def test_har_format_fixture_trains(tmp_path):
    src = tmp_path / "src"
    for rel, data in SMALL_FILES.items():
        (src / FOLDER / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / FOLDER / rel).write_bytes(data)
    out = tmp_path / "run"
    metrics = run(
        ["har", "lstm", "--data", str(src), "--task-option", "val_subjects=1",
         "--task-option", f"cache_dir={tmp_path / 'cache'}", "--units", "8", "--epochs", "1"], out,
    )  # fmt: skip
    assert_run_folder(out, ["confusion_matrix.png"])
    assert metrics["class_names"][0] == "WALKING" and metrics["samples"] == 24


def har_fixture_run(tmp_path, *options: str) -> tuple[Path, dict, Path]:
    """A har lstm run on the small fixture in the official layout: (folder, metrics, source)."""
    src = tmp_path / "src"
    for rel, data in SMALL_FILES.items():
        (src / FOLDER / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / FOLDER / rel).write_bytes(data)
    out = tmp_path / "run"
    args = ["har", "lstm", "--data", str(src), "--task-option", "val_subjects=1", *options]
    args += ["--task-option", f"cache_dir={tmp_path / 'cache'}", "--units", "8", "--epochs", "1"]
    return out, run(args, out), src


def test_saved_model_takes_raw_windows_and_reproduces_the_metrics(tmp_path):
    """Standardisation and framing are layers of the model: the raw (128, 9) windows as the
    loader returns them go straight in."""
    from test_har import SMALL_ARRAYS

    out, metrics, _ = har_fixture_run(tmp_path, "--task-option", "frame_steps=4")
    model = keras.models.load_model(out / "model.keras")
    assert model.input_shape == (None, None, 9)
    assert {"standardization", "framing"} <= {layer.name for layer in model.layers}
    raw = SMALL_ARRAYS["x_test"]
    labels = model.predict(raw, verbose=0).argmax(axis=-1)
    assert int((labels != SMALL_ARRAYS["y_test"]).sum()) == metrics["errors"]


def test_a_run_from_before_models_did_their_own_preprocessing_still_evaluates(tmp_path, capsys):
    """An old run folder: its model takes standardised, framed windows, and its config.json
    does not say the model preprocesses; zoo.evaluate hands it the arrays it was trained on."""
    from zoo.files import write_json
    from zoo.scoring import score

    out, _, src = har_fixture_run(tmp_path, "--task-option", "frame_steps=4")
    config = json.loads((out / "config.json").read_text())
    del config["task"]["info"]["preprocessing"]
    old = tmp_path / "old"
    old.mkdir()
    write_json(old / "config.json", config)
    task = get_task("har", data=str(src), val_subjects=1, frame_steps=4,
                    cache_dir=str(tmp_path / "cache")).preprocessed()  # fmt: skip
    model = create_model("lstm", task.input_shape, 6, units=8)
    assert model.input_shape == (None, None, 36)
    model.save(old / "model.keras")
    assert evaluate_cli.main([str(old)]) == 0
    expected = score(model, task)["accuracy"]
    assert f"test accuracy {expected:.4f}" in capsys.readouterr().out


@pytest.mark.slow
def test_same_seed_gives_the_same_metrics(tmp_path):
    first = run(["echo", "lstm", *TINY_ECHO, "--seed", "3", "--dropout", "0.2"], tmp_path / "a")
    second = run(["echo", "lstm", *TINY_ECHO, "--seed", "3", "--dropout", "0.2"], tmp_path / "b")
    assert first["loss"] == second["loss"] and first["accuracy"] == second["accuracy"]


@pytest.mark.slow
def test_ensemble_averages_members_trained_as_single_runs(tmp_path, capsys):
    tiny = ["count_ones", "lstm", "--task-option", "length=6", "--task-option", "train_size=40",
            "--task-option", "val_size=8", "--units", "8", "--epochs", "2", "--seed", "5"]  # fmt: skip
    metrics = run([*tiny, "--ensemble", "2"], tmp_path / "ens")
    assert capsys.readouterr().out.count("member ") == 2
    folder = tmp_path / "ens"
    members = [keras.models.load_model(folder / f"member-{k}" / "model.keras") for k in (1, 2)]
    ensemble = keras.models.load_model(folder / "model.keras")
    config = json.loads((folder / "config.json").read_text())
    assert config["parameters"] == ensemble.count_params() == 2 * members[0].count_params()
    assert [m["seed"] for m in metrics["members"]] == [5, 1005]
    assert metrics["epochs_run"] == 4 and (folder / "confusion_matrix.png").exists()
    x = keras.random.uniform((16, 6, 1), seed=0)
    mean = (members[0].predict(x, verbose=0) + members[1].predict(x, verbose=0)) / 2
    assert np.allclose(ensemble.predict(x, verbose=0), mean, atol=1e-6)
    alone = run([*tiny, "--seed", "1005"], tmp_path / "alone")  # member 2 is this run
    second = json.loads((folder / "member-2" / "metrics.json").read_text())
    assert second["accuracy"] == alone["accuracy"] and second["loss"] == alone["loss"]


@pytest.mark.slow
def test_hparams_replay_and_flags_override_it(tmp_path):
    hparams = tmp_path / "best_hparams.json"
    hparams.write_text(json.dumps({
        "model": "gru", "units": 8, "depth": 2, "dropout": 0.1, "optimizer": "rmsprop",
        "learning_rate": 0.01, "batch_size": 16, "epochs": 3,
    }))  # fmt: skip
    out = tmp_path / "run"
    run(["echo", "--hparams", str(hparams), "--epochs", "1",
         "--task-option", "series_length=900"], out)  # fmt: skip
    config = json.loads((out / "config.json").read_text())["hyperparameters"]
    assert config["model"] == "gru" and config["optimizer"] == "rmsprop" and config["epochs"] == 1
    model = keras.models.load_model(out / "model.keras")
    assert [layer.name for layer in model.layers if "gru" in layer.name] == ["gru_1", "gru_2"]
    assert model.get_layer("gru_1").units == 8


@pytest.mark.slow
def test_evaluate_reproduces_the_saved_metrics(tmp_path, capsys):
    metrics = run(["echo", "gru", *TINY_ECHO], tmp_path / "run")
    capsys.readouterr()
    assert evaluate_cli.main([str(tmp_path / "run" / "model.keras"), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["accuracy"] == metrics["accuracy"] and again["targets"] == metrics["targets"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ech", "lstm"], "Unknown task 'ech'. Did you mean: 'echo'?"),
        (["echo", "lstn"], "Unknown model 'lstn'. Did you mean: 'lstm'"),
        (["echo", "lstm", "--units", "-4"], "argument --units: must be a positive integer"),
        (["echo", "lstm", "--dropout", "1.5"], "dropout must be in [0, 1)"),
        (["har", "lstm", "--data", "/no/such/har.zip"], "/no/such/har.zip"),
        (["echo", "lstm", "--data", "x.npz"], "task 'echo' reads no file"),
        (["sine", "bilstm"], "reads sequences backwards"),
        (["sine", "lstm_fcn"], "convolves over the whole window"),
        (["echo", "gru_fcn"], "gives one output a window (classification or regression)"),
        (["count_ones", "lstm_fcn", *SHORT_WINDOWS], "at least kernel_size steps"),
        (["count_ones", "gru_fcn", "--shuffle", "maybe"], "--shuffle: must be true or false"),
        (["count_ones", "lstm", "--filters", "8"], "model 'lstm' takes no filters"),
        (["echo", "lstm", "--hparams", "missing.json"], "--hparams: no such file"),
        (["echo"], "give a MODEL"),
        (["echo", "lstm", "--optimizer", "adamm"], "invalid choice: 'adamm'"),
        (["echo", "lstm", "--learning-rate", "nan"], "--learning-rate: must be a finite number"),
        (["echo", "lstm", "--learning-rate", "-1"], "above 0 and at most 10, got '-1'"),
        (["echo", "lstm", "--learning-rate", "1e30"], "above 0 and at most 10, got '1e30'"),
        (["echo", "lstm", "--units", "1000000"], "over the limit of 100,000,000"),
        (["echo", "lstm", "--refit-best", "--refit"], "then refits; drop --refit"),
        (["echo", "lstm", "--refit-best", "--no-early-stopping"], "drop --no-early-stopping"),
        (["echo", "lstm", "--refit-best", "--ensemble", "2"], "drop --ensemble"),
    ],
)
def test_bad_arguments_are_one_line_and_leave_nothing(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        train.main([*args, "--quiet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no runs/ folder, nothing half-written


def test_out_naming_a_file_and_absurd_replayed_rates_are_refused(tmp_path, capsys):
    (tmp_path / "taken").write_text("a file")
    (tmp_path / "best.json").write_text(json.dumps({"model": "gru", "learning_rate": 1e30}))
    for args, says in (
        (["echo", "gru", "--out", str(tmp_path / "taken")], "is a file; give a new or empty"),
        (["echo", "--hparams", str(tmp_path / "best.json")], "at most 10. Received: "),
    ):
        with pytest.raises(SystemExit) as exit_info:
            train.main([*args, "--quiet"])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.count("\n") == 1 and says in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.json", "taken"]


def test_a_corrupt_model_file_is_named_corrupt_not_missing(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"hyperparameters": {"task": "echo"}}))
    (tmp_path / "model.keras").write_bytes(b"PK\x03\x04 and then the kill")
    with pytest.raises(SystemExit) as exit_info:
        evaluate_cli.main([str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1, err
    assert "the file is corrupt (empty, truncated" in err and "not found" not in err


def test_cli_as_a_process(tmp_path):
    """The real entry point: --list works, and a bad name exits 2 with one line, no traceback."""
    listing = subprocess.run(
        [sys.executable, "-m", "zoo.train", "--list"], capture_output=True, text=True, cwd=tmp_path
    )
    assert listing.returncode == 0 and "bilstm" in listing.stdout and "count_ones" in listing.stdout
    entries = [line for line in listing.stdout.splitlines() if line[:2] == "  " != line[:3]]
    starts = {len(line) - len(line[2:].split(" ", 1)[1].lstrip()) for line in entries}
    assert len(starts) == 1  # descriptions line up, however long a name
    bad = subprocess.run(
        [sys.executable, "-m", "zoo.train", "har", "lstn"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        "python -m zoo.train: error: Unknown model 'lstn'. Did you mean: 'lstm'"
    )
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- presets


def resolved(args: list[str]) -> dict:
    """The configuration the arguments resolve to, flat as config.json holds it."""
    return train.configure(train.build_parser().parse_args(args)).as_dict()


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_resolves_and_builds(name):
    config = resolved(["--preset", name])
    assert config["preset"] == name
    settings = RunConfig.from_dict(config).model_settings
    if config.get("task_options", {}).get("window_features"):  # statistics come from the task
        from zoo.features import feature_spec
        from zoo.tasks.har import CHANNELS

        windows = np.random.default_rng(0).normal(size=(8, 128, 9)).astype("float32")
        settings["preprocessing"] = {"window_features": feature_spec(windows, CHANNELS, 50.0)}
    model = create_model(config["model"], (128, 9), 6, **settings)  # fails on any bad value
    assert model.count_params() > 0
    assert resolved([config["task"], config["model"], "--preset", name]) == config


def test_a_run_config_round_trips_through_its_flat_form_and_fill_keeps_what_was_given():
    flat = {"task": "echo", "model": "gru", "units": 8, "epochs": 3, "early_stopping": False}
    config = RunConfig.from_dict({**flat, "task_options": {"series_length": 600}})
    assert config.model_settings == {"units": 8} and config.epochs == 3
    config.fill({"epochs": 10, "batch_size": 16, "dropout": 0.3, "units": 4})
    assert (config.epochs, config.batch_size) == (3, 16)
    assert config.model_settings == {"units": 8, "dropout": 0.3}
    assert RunConfig.from_dict(config.as_dict()) == config
    training = config.training()
    assert (training.epochs, training.batch_size, training.stops_early) == (3, 16, False)
    with pytest.raises(ValueError, match="not set yet"):
        RunConfig("echo", "gru").training()


def test_task_and_model_start_from_their_preset_and_flags_win():
    preset = get_preset("har_lstm")
    config = resolved(["har", "lstm", "--dropout", "0.05"])
    assert config["preset"] == "har_lstm" and config["dropout"] == 0.05
    for key, value in preset.items():
        if key != "dropout":
            assert config[key] == value, key


def test_preset_none_and_hparams_replays_use_no_default_preset(tmp_path):
    assert "preset" not in resolved(["har", "lstm", "--preset", "none"])
    hparams = tmp_path / "h.json"
    hparams.write_text(json.dumps({"model": "lstm", "units": 8}))
    config = resolved(["har", "--hparams", str(hparams)])
    assert "preset" not in config and config["units"] == 8
    assert "recurrent_dropout" not in config


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "har_lstn"], "Unknown preset 'har_lstn'. Did you mean: 'har_lstm'"),
        (
            ["echo", "lstm", "--preset", "har_lstm"],
            "preset 'har_lstm' is for har lstm, not task 'echo'",
        ),
    ],
)
def test_bad_presets_are_one_line(args, message, capsys):
    with pytest.raises(SystemExit):
        train.main([*args, "--quiet"])
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err


def test_cosine_schedule_decays_from_the_optimizer_learning_rate():
    from zoo.fit import make_optimizer

    for rate, start in ((None, 0.001), (0.02, 0.02)):  # None: Adam's own default
        optimizer = make_optimizer("adam", rate, lr_schedule="cosine", decay_steps=10)
        assert optimizer.get_config()["learning_rate"]["class_name"] == "CosineDecay"
        assert float(optimizer.learning_rate) == pytest.approx(start)  # at step 0
        optimizer.iterations.assign(10)
        assert float(optimizer.learning_rate) == pytest.approx(0.0)  # at decay_steps
    with pytest.raises(ValueError, match="needs decay_steps > 0"):
        make_optimizer("adam", lr_schedule="cosine")
    with pytest.raises(ValueError, match="lr_schedule must be one of constant, cosine"):
        make_optimizer("adam", lr_schedule="step")


# ---------------------------------------------------------------- the house's promises


def test_help_list_and_refusals_of_names_and_paths_import_no_tensorflow():
    code = (
        "import sys, contextlib, io\n"
        "from zoo import train\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    train.main(['--list'])\n"
        "    try:\n"
        "        train.main(['har', 'lstm', '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "from tuning import search\n"  # refused before Keras starts: at once, however loaded
        "with contextlib.redirect_stderr(io.StringIO()) as err:\n"
        "    for main, args in ((train.main, ['nosuch', 'lstm']), (search.main, ['nosuch']),\n"
        "                       (train.main, ['har', 'lstm', '--data', '/no/such']),\n"
        "                       (search.main, ['har', '--data', '/no/such']),\n"
        "                       (train.main, ['echo', 'gru', '--units', '1000000'])):\n"
        "        try:\n"
        "            assert main(args) == 2\n"
        "        except SystemExit as exit_:\n"
        "            assert exit_.code == 2\n"
        "assert err.getvalue().count('error:') == 5, err.getvalue()\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_help_names_the_environment_and_the_pairs_own_defaults(capsys):
    with pytest.raises(SystemExit):
        train.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "RNN_ZOO_HAR_DATA" in text and "RNN_ZOO_CACHE" in text
    with pytest.raises(SystemExit):
        train.main(["har", "lstm", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "most epochs (default for har lstm: 60)" in text
    assert "dropout after each recurrent layer (default for har lstm: 0.3)" in text
    with pytest.raises(SystemExit):
        train.main(["echo", "stacked_lstm", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "recurrent layers (default for echo stacked_lstm: 2)" in text
    assert "batch size (default for echo stacked_lstm: 32)" in text


def test_list_shows_each_tasks_options_and_training_defaults():
    text = train.list_everything()
    assert "options: series_length=50000, window=15, echo_step=3, stateful=False" in text
    assert "frame_steps=1" in text and "per_subject=False" in text
    assert "training: epochs=200, batch_size=64, learning_rate=0.01, patience=40" in text
    assert "units=64, depth=2, dropout=0.0" in text  # stacked_lstm's hyperparameters


def test_files_follow_the_umask_and_json_is_strict(tmp_path, capsys):
    import os

    out = tmp_path / "run"
    old = os.umask(0o022)
    try:
        run(["echo", "gru", *TINY_ECHO], out)
    finally:
        os.umask(old)
    for path in out.rglob("*"):
        if path.is_file():
            assert path.stat().st_mode & 0o777 == 0o644, path
    from zoo.runs import write_metrics

    write_metrics(tmp_path, {"loss": float("nan"), "val": {"mse": float("inf")}, "n": 3})
    text = (tmp_path / "metrics.json").read_text()
    assert json.loads(text) == {"loss": None, "val": {"mse": None}, "n": 3}
    assert "NaN" not in text and "Infinity" not in text
    assert "loss, val.mse not finite" in capsys.readouterr().err


def test_a_run_whose_loss_diverges_fails_and_keeps_no_model(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["random_walk", "lstm", "--task-option", "length=300", "--optimizer", "sgd"]
    args += ["--learning-rate", "10", "--epochs", "2", "--out", str(out), "--quiet"]
    assert train.main(args) == 1
    err = capsys.readouterr().err
    assert "training diverged: the loss is" in err and err.count("\n") == 1
    assert (out / "config.json").exists() and (out / "history.csv").exists()
    assert not (out / "model.keras").exists() and not (out / "metrics.json").exists()


@pytest.mark.slow
def test_jit_compile_flag_is_recorded(tmp_path):
    out = tmp_path / "run"
    run(["echo", "gru", *TINY_ECHO, "--jit-compile", "off"], out)
    config = json.loads((out / "config.json").read_text())
    assert config["hyperparameters"]["jit_compile"] == "off"


# ---------------------------------------------------------------- stateful training

STATEFUL = ["--task-option", "stateful=true", "--task-option", "series_length=3000"]
STATEFUL += ["--task-option", "streams=8", "--units", "8", "--epochs", "2"]


def test_stateful_echo_carries_state_between_batches(tmp_path):
    """Row b of batch k+1 continues row b of batch k: the first steps of a window, which a
    stateless model cannot know, are targets too; only each stream's first echo_step are not."""
    task = get_task("echo", stateful=True, series_length=3000, streams=8)
    x, y, w = task.split("train")
    assert task.stateful_batch == 8 and len(x) % 8 == 0
    np.testing.assert_array_equal(y[8:16, 0], x[0:8, 12, 0])  # echoes the previous batch
    assert w[:8, :3].sum() == 0 and w[8:, :3].all()
    metrics = run(["echo", "lstm", *STATEFUL], tmp_path / "run")
    assert metrics["targets"] == int(task.w_test.sum())
    model = keras.models.load_model(tmp_path / "run" / "model.keras")
    assert model.input_shape == (8, None, 1)
    assert all(layer.stateful for layer in model.layers if isinstance(layer, keras.layers.RNN))


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("bilstm", "cannot carry its state forward"),
        ("conv_lstm", "a stateful model carries state forward through a recurrent stack"),
    ],
)
def test_stateful_refuses_models_that_cannot_carry_state(model, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["echo", model, *STATEFUL, "--out", str(tmp_path / "run"), "--quiet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_npz_model_takes_the_users_raw_windows(tmp_path):
    """The user's own windows, far from zero mean: the saved model standardises them itself."""
    rng = np.random.default_rng(0)
    x = rng.normal(loc=[50.0, -3.0], scale=[10.0, 0.1], size=(60, 12, 2)).astype("float32")
    y = (x[:, :, 0].mean(axis=1) > 50).astype("int64")
    data = tmp_path / "mine.npz"
    np.savez(data, X_train=x[:48], y_train=y[:48], X_test=x[48:], y_test=y[48:])
    out = tmp_path / "run"
    metrics = run(["npz", "gru", "--data", str(data), "--units", "4", "--epochs", "2"], out)
    model = keras.models.load_model(out / "model.keras")
    labels = model.predict(x[48:], verbose=0).argmax(axis=-1)  # the file's raw test windows
    assert int((labels != y[48:]).sum()) == metrics["errors"]
    assert "standardization" in {layer.name for layer in model.layers}


def small_npz(tmp_path: Path, windows: int) -> Path:
    """An npz of `windows` training windows (8 steps, 2 channels, 2 classes) and 16 test ones."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(windows + 16, 8, 2)).astype("float32")
    y = (x[:, :, 0].mean(axis=1) > 0).astype("int64")
    path = tmp_path / f"small-{windows}.npz"
    np.savez(path, X_train=x[:windows], y_train=y[:windows], X_test=x[windows:], y_test=y[windows:])
    return path


@pytest.mark.slow
def test_small_training_split_is_regularised_and_flags_override_it(tmp_path, capsys):
    from zoo.config import SMALL_DATA, SMALL_DATA_DROPOUT, training_defaults_for

    large = get_task("npz", data=small_npz(tmp_path, SMALL_DATA + 200))
    assert len(large.x_train) >= SMALL_DATA and "dropout" not in training_defaults_for(large)
    tiny = ["npz", "lstm", "--data", str(small_npz(tmp_path, 40)), "--units", "4"]
    run([*tiny, "--epochs", "1"], tmp_path / "run", small_data_defaults=True)
    config = json.loads((tmp_path / "run" / "config.json").read_text())["hyperparameters"]
    assert {k: config[k] for k in SMALL_DATA_DROPOUT} == SMALL_DATA_DROPOUT
    layer = keras.models.load_model(tmp_path / "run" / "model.keras").get_layer("lstm_1")
    assert layer.cell.recurrent_dropout == SMALL_DATA_DROPOUT["recurrent_dropout"]
    note = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("Small")]
    assert len(note) == 1 and "dropout 0.3 and recurrent dropout 0.3" in note[0]
    flags = ["--dropout", "0", "--recurrent-dropout", "0.1"]
    config = train.configure(train.build_parser().parse_args([*tiny, *flags]))
    _, model = train.prepare(config)
    assert (
        config.model_settings["dropout"] == 0
        and model.get_layer("lstm_1").cell.recurrent_dropout == 0.1
    )


def test_fcn_models_on_a_small_split_train_on_every_window_unless_asked_to_stop_early(
    tmp_path, capsys
):
    """The FCN recipe on a small split trains on the train and validation windows together
    for FCN_GRADIENT_STEPS steps and keeps the last epoch; a flag that asks for early stopping
    keeps the validation split apart."""
    import math

    from zoo.config import FCN_GRADIENT_STEPS, SMALL_DATA, training_defaults_for

    data = small_npz(tmp_path, 40)
    task = get_task("npz", data=data)
    chosen = training_defaults_for(task, "lstm_fcn")
    windows = len(task.x_train) + len(task.x_val)
    assert chosen["refit"] is True and windows == 40
    steps = chosen["epochs"] * math.ceil(windows / chosen["batch_size"])
    assert FCN_GRADIENT_STEPS <= steps < FCN_GRADIENT_STEPS + math.ceil(windows / 8)
    large = get_task("npz", data=small_npz(tmp_path, SMALL_DATA + 200))
    assert "refit" not in training_defaults_for(large, "lstm_fcn")
    assert "refit" not in training_defaults_for(task, "lstm")

    base = ["npz", "gru_fcn", "--data", str(data), "--units", "4", "--filters", "4"]
    config = train.configure(train.build_parser().parse_args(base))
    train.prepare(config)
    assert config.refit is True and not config.training().stops_early
    note = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("Small")]
    assert len(note) == 1 and f"trained on all {windows} labelled windows" in note[0]
    assert "--early-stopping keeps the validation split apart" in note[0]
    for flags in (["--early-stopping"], ["--patience", "5"], ["--refit-best"]):
        config = train.configure(train.build_parser().parse_args([*base, *flags]))
        train.prepare(config)
        assert not config.refit and config.training().stops_early, flags


# ---------------------------------------------------------------- killed runs resume exactly


class Killed(Exception):
    """Stands for a SIGKILL right after an epoch's backup was committed."""


def kill_after(monkeypatch, epochs: int) -> None:
    """Stop the next run as a kill would, right after epoch `epochs`' backup committed."""
    from zoo import fit

    commit = fit.EpochBackup._commit

    def commit_then_die(self, done, improved, ended=False):
        commit(self, done, improved, ended)
        if done == epochs:
            raise Killed

    monkeypatch.setattr(fit.EpochBackup, "_commit", commit_then_die)


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_results_of_an_uninterrupted_one(tmp_path, monkeypatch):
    """Dropout's random state, the optimizer's moments, the early stopping's counters and the
    batches' order (drawn from the seed and the epoch) come back: the resumed run's history and
    metrics equal the uninterrupted run's exactly. A torn history.csv row and a temporary file
    (what a kill mid-write leaves) do not matter."""
    args = ["count_ones", "gru", "--units", "8", "--epochs", "4", "--dropout", "0.3"]
    args += ["--task-option", "length=6", "--task-option", "train_size=40"]
    args += ["--task-option", "val_size=8", "--patience", "2"]
    whole = run(args, tmp_path / "whole")
    out = tmp_path / "killed"
    kill_after(monkeypatch, 2)
    with pytest.raises(Killed):
        run(args, out)
    monkeypatch.undo()
    with open(out / "history.csv", "a") as f:
        f.write("2,0.31")  # a row torn mid-write
    (out / ".model-0a1b2c3d.keras").write_bytes(b"half")
    assert train.main(["--resume", str(out), "--quiet"]) == 0
    resumed = json.loads((out / "metrics.json").read_text())
    for metrics in (whole, resumed):
        metrics.pop("train_seconds")
    assert resumed == whole
    assert (out / "history.csv").read_text() == (tmp_path / "whole" / "history.csv").read_text()
    assert not (out / "backup").exists() and not [p for p in out.iterdir() if p.name[0] == "."]


@pytest.mark.slow
def test_a_run_killed_after_its_early_stopping_ended_it_trains_no_further_epoch(
    tmp_path, monkeypatch
):
    """Killed after the backup of the epoch whose early stopping ended the run, but before the
    run's end: resumed, it trains no further epoch (found by scripts/crash_fuzz.py train)."""
    args = ["count_ones", "gru", "--units", "4", "--epochs", "40", "--patience", "1"]
    args += ["--task-option", "length=6", "--task-option", "train_size=40"]
    args += ["--task-option", "val_size=8", "--learning-rate", "1e-4"]
    whole = run(args, tmp_path / "whole")
    assert whole["epochs_run"] < 40  # stopped early
    out = tmp_path / "killed"
    kill_after(monkeypatch, whole["epochs_run"])
    with pytest.raises(Killed):
        run(args, out)
    monkeypatch.undo()
    assert train.main(["--resume", str(out), "--quiet"]) == 0
    resumed = json.loads((out / "metrics.json").read_text())
    for metrics in (whole, resumed):
        metrics.pop("train_seconds")
    assert resumed == whole


@pytest.mark.slow
@pytest.mark.parametrize("torn", [["state.json"], ["state.json", "state.json.bak"]])
def test_a_torn_backup_is_recovered_with_one_line(tmp_path, monkeypatch, capsys, torn):
    """backup/state.json torn: its last good copy (one epoch earlier) is used; both torn: the
    run starts again from its first epoch. Either way one line says so, and the run ends."""
    args = ["echo", "gru", *TINY_ECHO, "--epochs", "3"]
    out = tmp_path / "run"
    kill_after(monkeypatch, 2)
    with pytest.raises(Killed):
        run(args, out)
    monkeypatch.undo()
    for name in torn:
        path = out / "backup" / name
        path.write_text(path.read_text()[:30])
    assert train.main(["--resume", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    says = "using its last good copy" if len(torn) == 1 else "training starts again"
    assert sum(says in line for line in err.splitlines()) == 1, err
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 3
