"""`python -m zoo.train TASK MODEL`: train a zoo model on a task, evaluate it, save a run folder.

The run folder holds config.json (written before training), model.keras (best validation
weights), history.csv, metrics.json, PNG plots and TensorBoard logs in tb/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import sys
import time
from pathlib import Path

from zoo.cli import Parser, non_negative_float, parse_assignments, positive_int
from zoo.registry import UnknownNameError
from zoo.training import LR_SCHEDULES, OPTIMIZERS

DEFAULTS = {"optimizer": "adam", "lr_schedule": "constant", "seed": 0, "ensemble": 1}
MEMBER_SEED_STEP = 1000  # ensemble member K trains with seed SEED + 1000*(K-1)


def build_parser() -> Parser:
    p = Parser(
        prog="python -m zoo.train",
        description="Train a zoo model on a task, evaluate it on the test split and save a run "
        "folder (config, best model, history, metrics, plots, TensorBoard logs).",
        epilog="Examples: python -m zoo.train har lstm | python -m zoo.train echo gru --epochs 5 | "
        "python -m zoo.train har --hparams best_hparams.json | python -m zoo.train --preset har_lstm | "
        "python -m zoo.train --list",
    )
    p.add_argument("task", nargs="?", help="task name (see --list); may come from --preset")
    p.add_argument(
        "model", nargs="?", help="model name (see --list); may come from --preset or --hparams"
    )
    p.add_argument("--list", action="store_true", help="list models and tasks, then exit")
    own = "the task's own"
    mine = "the model's own"
    p.add_argument("--epochs", type=positive_int, help=f"most epochs (default: {own})")
    p.add_argument("--batch-size", type=positive_int, help=f"batch size (default: {own})")
    p.add_argument(
        "--units", type=positive_int, help=f"units a recurrent layer (default: {mine}, 64)"
    )
    p.add_argument("--depth", type=positive_int, help=f"recurrent layers (default: {mine})")
    p.add_argument(
        "--dropout", type=float, help=f"dropout after each recurrent layer (default: {mine}, 0)"
    )
    p.add_argument(
        "--recurrent-dropout",
        type=float,
        help=f"dropout on the recurrent state (default: {mine}, 0)",
    )
    p.add_argument(
        "--l2", type=non_negative_float, help=f"L2 penalty on kernels (default: {mine}, 0)"
    )
    p.add_argument(
        "--optimizer",
        choices=list(OPTIMIZERS),
        help=f"optimizer (default: {DEFAULTS['optimizer']})",
    )
    p.add_argument(
        "--learning-rate", type=float, help="learning rate (default: the optimizer's own)"
    )
    p.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        help=f"cosine: decay the learning rate to 0 over --epochs (default: {DEFAULTS['lr_schedule']})",
    )
    p.add_argument(
        "--patience",
        type=positive_int,
        help="epochs without validation gain before stopping (default: the task's own, 10 for most)",
    )
    p.add_argument(
        "--seed",
        type=int,
        help=f"seed for data shuffling, initialisation and dropout (default: {DEFAULTS['seed']})",
    )
    p.add_argument(
        "--ensemble",
        type=positive_int,
        metavar="N",
        help="train N models alone and average their outputs (a seed ensemble): member K "
        f"uses seed SEED+{MEMBER_SEED_STEP}*(K-1), so ensembles of nearby seeds share no member; "
        "each member's own run is in member-K/ (default: 1)",
    )
    p.add_argument("--data", help="data file or folder for tasks that read one (har, mnist, npz)")
    p.add_argument(
        "--task-option",
        action="append",
        metavar="KEY=VALUE",
        help="option of the task, e.g. val_subjects=4 (har) or series_length=5000 (echo); repeatable",
    )
    p.add_argument("--out", help="run folder (default: runs/<task>-<model>-<timestamp>)")
    p.add_argument(
        "--preset",
        help="named configuration (see --list); default: the one named TASK_MODEL if there is "
        "one (not with --hparams); 'none' for the bare defaults. Flags override it",
    )
    p.add_argument(
        "--hparams",
        help="JSON of hyperparameters, e.g. a tuning job's best_hparams.json; flags given here override it",
    )
    p.add_argument(
        "--quiet", action="store_true", help="one line an epoch instead of a progress bar"
    )
    return p  # fmt: skip


def list_everything() -> str:
    """Models, tasks and presets with their one-line descriptions."""
    from zoo import MODELS, TASKS
    from zoo.presets import PRESETS

    width = max(len(n) for n in (*MODELS.list(), *TASKS.list(), *PRESETS.list())) + 2
    lines = ["Models:"]
    lines += [f"  {n:<{width}}{MODELS.describe(n)}" for n in MODELS.list()]
    lines += ["Tasks:"]
    lines += [f"  {n:<{width}}{TASKS.describe(n)}" for n in TASKS.list()]
    lines += ["Presets (python -m zoo.train --preset NAME; TASK_MODEL ones are defaults):"]
    lines += [f"  {n:<{width}}{PRESETS.describe(n)}" for n in PRESETS.list()]
    return "\n".join(lines)


def read_hparams(path: str) -> dict:
    """The hyperparameters in a JSON file (an object of names to values)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"--hparams: no such file: {path}") from None
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"--hparams: {path} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"--hparams: {path} must hold a JSON object of names to values")
    return data.get("hyperparameters", data)


def resolve(args: argparse.Namespace) -> dict:
    """One configuration: a preset, then --hparams, then the flags (later ones win).

    The preset is `--preset NAME`, else the one named after TASK and MODEL unless --hparams
    replays a configuration; `--preset none` uses none.
    """
    from zoo import MODELS, TASKS
    from zoo.presets import NO_PRESET, default_preset, get_preset
    from zoo.runs import TRAINING_KEYS, model_keys

    hparams = read_hparams(args.hparams) if args.hparams else {}
    skip = ("list", "quiet", "hparams", "task_option", "preset")
    flags = {k: v for k, v in vars(args).items() if v is not None and k not in skip}
    name = args.preset
    preset = get_preset(name) if name not in (None, NO_PRESET) else {}
    for key in ("task", "model"):
        if preset and key in flags and flags[key] != preset[key]:
            raise ValueError(
                f"preset {name!r} is for {preset['task']} {preset['model']}, not {key} "
                f"{flags[key]!r}; drop TASK MODEL or choose another preset"
            )
    task = flags.get("task") or hparams.get("task") or preset.get("task")
    model = flags.get("model") or hparams.get("model") or preset.get("model")
    if name is None and not args.hparams and task and model:
        name = default_preset(task, model)
        preset = get_preset(name) if name else {}
    config = {**preset, **hparams, **flags}
    if name not in (None, NO_PRESET):
        config["preset"] = name
    options = {
        **preset.get("task_options", {}),
        **hparams.get("task_options", {}),
        **parse_assignments(args.task_option, "--task-option"),
    }
    if options:
        config["task_options"] = options
    if not config.get("task"):
        raise ValueError("give a TASK (see --list)")
    TASKS.get(config["task"])
    if not config.get("model"):
        raise ValueError("give a MODEL, or --hparams with a 'model' entry (see --list)")
    MODELS.get(config["model"])
    allowed = {
        "task",
        "model",
        "data",
        "out",
        "task_options",
        "preset",
        *TRAINING_KEYS,
        *model_keys(config["model"]),
    }
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ValueError(
            f"model {config['model']!r} takes no {', '.join(unknown)}; "
            f"it takes {', '.join(model_keys(config['model']))}"
        )
    for key, value in DEFAULTS.items():
        config.setdefault(key, value)
    return config


def prepare(config: dict):
    """Load the task and build the model, so bad input fails before anything is written."""
    import keras

    from zoo.runs import check_pairing, load_task

    keras.utils.set_random_seed(config["seed"])
    task = load_task(config["task"], config.get("data"), config.get("task_options"))
    check_pairing(task, config["model"])
    model = build_model(config, task)
    config.setdefault("epochs", task.epochs)
    config.setdefault("batch_size", task.batch_size)
    config.setdefault("patience", task.patience)
    if task.learning_rate is not None:
        config.setdefault("learning_rate", task.learning_rate)
    return task, model


def build_model(config: dict, task):
    """The configured zoo model for `task`, initialised from the current random state."""
    from zoo import create_model
    from zoo.runs import model_keys

    hp = {k: config[k] for k in model_keys(config["model"]) if k in config}
    return create_model(
        config["model"], task.input_shape, task.num_outputs, output_kind=task.output_kind, **hp
    )


def run_folder(config: dict) -> Path:
    """The run folder, created new: runs/<task>-<model>-<timestamp> unless --out names one."""
    if config.get("out"):
        folder = Path(config["out"])
        if folder.exists() and any(folder.iterdir()):
            raise ValueError(f"--out {folder} exists and is not empty; choose a new folder")
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        folder = Path("runs") / f"{config['task']}-{config['model']}-{stamp}"
        n = 1
        while folder.exists():
            n += 1
            folder = folder.with_name(f"{config['task']}-{config['model']}-{stamp}-{n}")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def train(config: dict, task, model, folder: Path, verbose: int = 1) -> dict:
    """Compile, fit with early stopping and checkpoints, evaluate on test, save everything."""
    import keras

    from zoo.training import AtomicCheckpoint, compile_model, fit_callbacks, validation_data

    write_config(folder, config, task, model.count_params())
    x, y, w = task.split("train")
    compile_model(
        model, task, optimizer=config["optimizer"], learning_rate=config.get("learning_rate"),
        lr_schedule=config["lr_schedule"],
        decay_steps=config["epochs"] * math.ceil(len(x) / config["batch_size"]),
    )  # fmt: skip
    callbacks = fit_callbacks(task, patience=config["patience"])
    monitor, mode = task.objective
    callbacks += [
        AtomicCheckpoint(folder / "model.keras", monitor, mode),
        keras.callbacks.CSVLogger(str(folder / "history.csv")),
        keras.callbacks.TensorBoard(log_dir=str(folder / "tb")),
    ]
    started = time.perf_counter()
    interrupted = False
    try:
        history = model.fit(
            x, y, sample_weight=w, validation_data=validation_data(task),
            epochs=config["epochs"], batch_size=config["batch_size"],
            callbacks=callbacks, verbose=verbose, shuffle=True,
        ).history  # fmt: skip
    except KeyboardInterrupt:
        interrupted = True
        print("\nInterrupted: keeping the best model so far.", file=sys.stderr)
        history = model.history.history if model.history else {}
        if callbacks[0].best_weights is not None:
            model.set_weights(callbacks[0].best_weights)
    seconds = time.perf_counter() - started
    return save_results(
        task, model, folder, history, epochs_run=len(history.get("loss", [])),
        train_seconds=round(seconds, 1), best_epoch=callbacks[0].best_epoch + 1,
        interrupted=interrupted,
    )  # fmt: skip


def save_results(task, model, folder: Path, history: dict, **facts) -> dict:
    """A trained model's end of run: model.keras, its test and validation metrics with `facts`
    in metrics.json, and the plots. Returns the metrics."""
    from zoo.runs import write_json
    from zoo.training import evaluate, save_model_atomic

    save_model_atomic(model, folder / "model.keras")
    metrics = {**evaluate(model, task), **facts, "val": evaluate(model, task, "val")}
    metrics["val"].pop("report", None)
    write_json(folder / "metrics.json", metrics)
    draw_plots(task, model, history, metrics, folder)
    return metrics


def write_config(folder: Path, config: dict, task, parameters: int) -> None:
    """config.json, written before training: settings, task facts, versions, the command."""
    from zoo.runs import task_facts, versions, write_json

    write_json(folder / "config.json", {
        "hyperparameters": {k: v for k, v in config.items() if k != "out"},
        "task": task_facts(task), "versions": versions(), "parameters": parameters,
        "command": " ".join(sys.argv),
    })  # fmt: skip


def train_ensemble(config: dict, task, model, folder: Path, verbose: int = 1) -> dict:
    """`--ensemble N`: N members trained alone, member K with seed SEED+1000*(K-1), each a run folder
    member-K/ as a single run leaves it; then one Keras model averaging their outputs is
    evaluated and saved as the run's model.keras. Ctrl-C ends the member in training, keeps it
    and builds the ensemble from the members so far."""
    import keras

    from zoo.models import average_models

    count = config["ensemble"]
    write_config(folder, config, task, count * model.count_params())
    members, reports = [], []
    with no_retracing_warning():
        for k in range(1, count + 1):
            seed = config["seed"] + MEMBER_SEED_STEP * (k - 1)
            if k > 1:
                keras.utils.set_random_seed(seed)
                model = build_model(config, task)
            model.name = f"member_{k}"
            (folder / f"member-{k}").mkdir()
            metrics = train({**config, "seed": seed, "ensemble": 1}, task, model,
                            folder / f"member-{k}", verbose)  # fmt: skip
            members.append(model)
            reports.append({
                "seed": seed, "epochs_run": metrics["epochs_run"], "train_seconds": metrics["train_seconds"],
                "test": headline_metrics(metrics), "val": headline_metrics(metrics["val"]),
            })  # fmt: skip
            print(f"member {k}/{count} (seed {seed}): {headline(task, metrics)}")
            if metrics["interrupted"]:
                break
        return save_results(
            task, average_models(members), folder, {},
            epochs_run=sum(r["epochs_run"] for r in reports),
            train_seconds=round(sum(r["train_seconds"] for r in reports), 1),
            interrupted=len(members) < count, members=reports,
        )  # fmt: skip


@contextlib.contextmanager
def no_retracing_warning():
    """Hold back TensorFlow's "excessive retracing" warning: it counts the predict steps of all
    models together, so an ensemble's members, each traced once, set it off."""

    def keep(record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()

    log = logging.getLogger("tensorflow")
    log.addFilter(keep)
    try:
        yield
    finally:
        log.removeFilter(keep)


def headline_metrics(metrics: dict) -> dict:
    """The figures of an evaluation worth repeating in a summary."""
    return {k: metrics[k] for k in ("accuracy", "errors", "mse", "loss") if k in metrics}


def draw_plots(task, model, history: dict, metrics: dict, folder: Path) -> None:
    """The PNGs that say more than numbers, by output kind."""
    import numpy as np

    from zoo import plots
    from zoo.training import predict

    if history.get("loss"):
        plots.training_curves(history, folder / "training_curves.png")
    if task.output_kind == "classification":
        plots.confusion_matrix(
            metrics["confusion_matrix"], metrics["class_names"], folder / "confusion_matrix.png"
        )
        return
    x, y, _ = task.split("test")
    sample = slice(0, min(len(x), 512))
    y_pred = predict(model, x[sample])
    if task.output_kind == "sequence_classification":
        step = task.info.get("echo_step", 0)
        plots.echo_bars(
            x[sample],
            y[sample],
            np.argmax(y_pred, axis=-1),
            folder / "predictions.png",
            echo_step=step,
        )
    elif task.output_kind == "sequence_regression":
        plots.sequence_forecast(x[sample], y[sample], y_pred, folder / "forecast.png")
    else:
        anchor = np.asarray(task.info.get("test_anchor", np.zeros(len(x))))[sample]
        plots.series_forecast(
            anchor + y[sample, 0], anchor + y_pred[:, 0], folder / "forecast.png",
            baseline=anchor if "test_anchor" in task.info else None,
        )  # fmt: skip


def headline(task, metrics: dict) -> str:
    """The one figure a run reports first."""
    if task.is_classification:
        return f"test accuracy {metrics['accuracy']:.4f} ({metrics['errors']} errors in {metrics['targets']})"
    text = f"test MSE {metrics['mse']:.5f}"
    if "persistence_mse" in metrics:
        text += f" (persistence baseline {metrics['persistence_mse']:.5f})"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        print(list_everything())
        return 0
    from zoo import backend
    from zoo.tasks.base import DataError

    try:
        backend.load()
        config = resolve(args)
        task, model = prepare(config)
        folder = run_folder(config)
    except (UnknownNameError, DataError, ValueError) as err:
        parser.error(str(err))
    verbose = 2 if args.quiet or not sys.stdout.isatty() else 1
    preset = f" (preset {config['preset']})" if config.get("preset") else ""
    members = f", ensemble of {config['ensemble']}, each" if config["ensemble"] > 1 else ""
    print(f"{config['task']} / {config['model']}{preset}{members}: {model.count_params():,} parameters; "
          f"{len(task.x_train)} train, {len(task.x_val)} validation, {len(task.x_test)} test samples")  # fmt: skip
    if config["ensemble"] > 1:
        metrics = train_ensemble(config, task, model, folder, verbose=verbose)
    else:
        metrics = train(config, task, model, folder, verbose=verbose)
    print(f"Run folder: {folder}")
    print(f"{config['task']} {config['model']}: {headline(task, metrics)}, "
          f"{metrics['epochs_run']} epochs in {metrics['train_seconds']:.0f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
