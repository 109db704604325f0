"""`python -m tuning.search TASK`: a keras-tuner search over the zoo's models for a task.

Trials are scored on the task's validation objective (val_accuracy for classification, val_loss
otherwise); the test split is used once, at the end, on the best model. The project folder
DIR/PROJECT holds keras-tuner's own files (oracle.json, trial_*/) and ours:

    search.json        the settings, written before the search starts
    trials.csv         one row a trial: hyperparameters, objective, epochs run, seconds, status
    best_hparams.json  replays with `python -m zoo.train TASK --hparams best_hparams.json`
    best_model.keras   the best trial's model; best_metrics.json its test (and val) metrics
    *.png              objective against learning rate (by model, by optimizer) and units

Running the same command again resumes an interrupted search (finished trials are kept, the
one that was running starts again); --overwrite starts afresh.

Distributed: start one chief and any number of workers with the same arguments plus
    --chief HOST:PORT                     the chief: serves the oracle there, writes the reports
    --chief HOST:PORT --worker-id NAME    a worker (NAME like tuner0): runs trials
keras-tuner's KERASTUNER_ORACLE_IP / _PORT / KERASTUNER_TUNER_ID variables work as well.
Workers share the project folder with the chief. A worker silent for --worker-timeout seconds
is presumed dead: its trial is retried by another worker; when every worker is gone the chief
stops. scripts/tune_distributed.py starts a chief and N workers on this machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import warnings
from pathlib import Path

from tuning import report
from zoo import backend
from zoo.cli import Parser, non_negative_int, parse_assignments, parse_value, positive_int
from zoo.config import check_data_path, training_defaults_for
from zoo.config import load_task as load
from zoo.files import remove_temporaries, save_model, write_json
from zoo.registry import UnknownNameError
from zoo.runs import task_facts, versions
from zoo.scoring import headline, score
from zoo.tasks import TASKS
from zoo.tasks.base import DataError

DEFAULT_DIR = "runs/tuning"
# A validation split of a few windows scores nothing: below CV_BELOW training windows a
# trial is scored by CV_FOLDS-fold cross-validation instead.
CV_BELOW = 300
CV_FOLDS = 5


def parse_fixed(assignments: list[str]) -> dict[str, list]:
    """`["units=32", "optimizer=adam,sgd"]` -> `{"units": [32], "optimizer": ["adam", "sgd"]}`.

    One value fixes a hyperparameter; a comma-separated list narrows it to those values.
    """
    fixed = {}
    for text in assignments:
        name, sep, values = text.partition("=")
        if not sep or not name.strip() or not values.strip():
            raise ValueError(f"--fix needs NAME=VALUE[,VALUE...]. Received: {text!r}")
        parsed = [parse_value(v.strip()) for v in values.split(",") if v.strip()]
        if None in parsed:
            raise ValueError(f"--fix {name}: a value cannot be None. Received: {values!r}")
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in parsed):
            if any(isinstance(v, float) for v in parsed):  # keras-tuner wants one type a choice
                parsed = [float(v) for v in parsed]
        elif len({type(v) for v in parsed}) > 1:
            raise ValueError(f"--fix {name}: values must share one type. Received: {values!r}")
        fixed[name.strip()] = parsed
    return fixed


def duration(text: str) -> float:
    """argparse type: a time like 90s, 30m, 2h or 45 (seconds), as seconds > 0."""
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        seconds = float(number) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a time like 90s, 30m or 2h, got {text!r}"
        ) from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"must be a time above 0, got {text!r}")
    return seconds


def worker_timeout(text: str) -> float:
    """argparse type: seconds, at least MIN_WORKER_TIMEOUT (a few heartbeats)."""
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    from tuning.distributed import MIN_WORKER_TIMEOUT

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not value >= MIN_WORKER_TIMEOUT:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_WORKER_TIMEOUT:g}, got {text}")
    return value


def build_parser() -> Parser:
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    from tuning.distributed import DEFAULT_WORKER_TIMEOUT
    from tuning.hypermodel import NAMES
    from tuning.tuners import TUNERS

    p = Parser(
        prog="python -m tuning.search",
        description="Search hyperparameters of the zoo's models for a task with keras-tuner; "
        "write trials.csv, plots, best_hparams.json and the best model to DIR/PROJECT.",
        epilog="Examples: python -m tuning.search echo --tuner bayesian --max-trials 20 | "
        "python -m tuning.search har --models 'lstm,gru' --fix optimizer=adam --fix units=32,64 | "
        "python -m tuning.search har --chief 127.0.0.1:8000 [--worker-id tuner0]",
    )
    p.add_argument("task", help="task name (see python -m zoo.train --list)")
    p.add_argument("--tuner", choices=TUNERS.list(), default="random", help="search algorithm")
    p.add_argument("--max-trials", type=positive_int, default=10, help="most trials")
    p.add_argument(
        "--epochs",
        type=positive_int,
        help="most epochs a trial, early stopping aside; hyperband's largest budget "
        "(default: the task's own)",
    )
    p.add_argument(
        "--executions-per-trial",
        type=positive_int,
        default=1,
        help="models trained a trial from fresh initialisations; their objectives are averaged",
    )
    p.add_argument(
        "--models",
        help="comma-separated globs of models to choose from, e.g. 'lstm,gru' or "
        "'*lstm*' (default: every model that suits the task)",
    )
    p.add_argument(
        "--fix",
        action="append",
        metavar="NAME=VALUE[,VALUE...]",
        help="fix a hyperparameter (one value) or narrow it (several), e.g. optimizer=adam, "
        f"units=32,64; repeatable. Names: {', '.join(NAMES)}",
    )
    p.add_argument(
        "--task-option",
        action="append",
        metavar="KEY=VALUE",
        help="option passed to the task, e.g. series_length=600; repeatable",
    )
    p.add_argument(
        "--data", help="data file or folder for tasks that read one (har, mnist, npz, series)"
    )
    p.add_argument("--dir", default=DEFAULT_DIR, help="folder holding search projects")
    p.add_argument("--project", help="project folder name under --dir (default: TASK-TUNER)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh; without it an existing project is resumed",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the search and of each model's initialisation (default: 0)",
    )
    p.add_argument(
        "--patience",
        type=positive_int,
        help="epochs without validation gain before a trial stops (default: the task's own, "
        "10 for most; more on a small training split)",
    )
    p.add_argument(
        "--max-retries",
        type=non_negative_int,
        default=1,
        help="times a crashed trial (not a diverged one) is run again before it counts as failed",
    )
    p.add_argument(
        "--report-rss",
        action="store_true",
        help="print the peak resident memory of this process and its RSS after each trial",
    )
    p.add_argument(
        "--cv",
        type=positive_int,
        metavar="K",
        help="score each trial by K-fold cross-validation over the train and validation splits "
        f"pooled (K models a trial); default: {CV_FOLDS} folds when the training split has "
        f"fewer than {CV_BELOW} windows, else the validation split; 1 turns it off",
    )
    p.add_argument(
        "--time-budget",
        type=duration,
        metavar="TIME",
        help="stop starting trials after TIME (e.g. 90s, 30m, 2h) or when the time left is "
        "shorter than the mean trial so far; finished trials are kept and the search can be "
        "resumed (default: no limit)",
    )
    p.add_argument(
        "--isolate-trials",
        action="store_true",
        help="train each trial in a fresh process, so memory stays flat over a long search "
        "(costs a TensorFlow import, a few seconds, a trial)",
    )
    p.add_argument(
        "--quiet", action="store_true", help="no per-trial, per-epoch and progress output"
    )
    d = p.add_argument_group("distributed search")
    d.add_argument(
        "--chief",
        metavar="HOST:PORT",
        help="the chief's address; alone (or with --worker-id chief) this process is the chief",
    )
    d.add_argument(
        "--worker-id", metavar="NAME", help="run as a worker of --chief with this name, e.g. tuner0"
    )
    d.add_argument(
        "--worker-timeout",
        type=worker_timeout,
        default=DEFAULT_WORKER_TIMEOUT,
        help="chief: seconds of silence after which a worker is presumed dead",
    )
    return p


def load_task(args):
    """The task with its --task-option values and --data."""
    return load(args.task, args.data, parse_assignments(args.task_option, "--task-option"))


def settings_of(args, epochs: int) -> dict:
    """What defines a search: a resumed search must be started with the same."""
    return {
        "task": args.task,
        "task_options": args.task_option or [],
        "data": args.data,
        "tuner": args.tuner,
        "models": args.models,
        "fix": args.fix or [],
        "epochs": epochs,
        "patience": args.patience,
        "seed": args.seed,
        "cv": args.cv,
    }


def check_folds(task, folds: int) -> None:
    """Refuse more folds than labelled windows outside the test split, in one line."""
    windows = len(task.x_train) + len(task.x_val)
    if folds > windows:
        raise ValueError(
            f"--cv {folds}: the task has {windows} labelled windows outside its test split "
            f"(train and validation), fewer than the folds; use --cv {max(1, windows)} or fewer"
        )


def check_resume(project_dir: Path, settings: dict, overwrite: bool) -> None:
    """Refuse to resume a project that was started with other settings."""
    saved = project_dir / "search.json"
    if overwrite or not saved.exists():
        return
    before = json.loads(saved.read_text()).get("settings", {})
    changed = [
        f"{k}: {before.get(k)!r} -> {v!r}" for k, v in settings.items() if before.get(k) != v
    ]
    if changed:
        raise ValueError(
            f"{project_dir} holds a search started with other settings ({'; '.join(changed)}); "
            "pass --overwrite to start again, or choose another --project"
        )


def best_model(tuner, hypermodel, trial, epochs: int):
    """The best trial's model: its checkpoint, or retrained when the checkpoint is elsewhere
    (a worker on another machine)."""
    try:
        with warnings.catch_warnings():  # the checkpoint's optimizer state is not needed
            warnings.simplefilter("ignore", UserWarning)
            return tuner.load_model(trial)
    except (OSError, ValueError) as err:
        print(f"Retraining the best trial ({err})")
        hp = trial.hyperparameters
        model = hypermodel.build(hp)
        hypermodel.fit(hp, model, epochs=hp.values.get("tuner/epochs", epochs))
        return model


def replay_config(trial, hypermodel, *, epochs: int, patience: int, seed: int) -> dict:
    """`trial`'s values as `python -m zoo.train --hparams` replays them: for the epochs its
    early stopping kept (the mean over its executions, recorded as `best_epoch`), with its
    schedule and batch (`tuning.hypermodel.training_config`)."""
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    from tuning.hypermodel import model_name, training_config

    values = trial.hyperparameters.values
    kept = (
        trial.metrics.get_last_value("best_epoch") if trial.metrics.exists("best_epoch") else None
    )
    return training_config(
        values,
        epochs=epochs,
        patience=patience,
        seed=seed,
        best_epoch=kept,
        schedule=hypermodel.schedule(model_name(values)),
    )


def last_error(trials) -> str:
    """The last line of the most recent failed trial's message."""
    messages = [t.message for t in trials if t.message]
    return messages[-1].strip().splitlines()[-1] if messages else ""


def report_rss(rows: list[dict]) -> None:
    """Peak RSS of this process, and the RSS each worker recorded after its trials."""
    import resource  # Unix only, like ru_maxrss in KiB

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    after = [r["rss_mb"] for r in rows if r.get("rss_mb") is not None]
    line = f"Peak RSS {peak:.0f} MB over {len(rows)} trials"
    if after:
        line += f"; RSS after trial 1: {after[0]:.0f} MB, after the last: {after[-1]:.0f} MB"
        line += f", highest after a trial: {max(after):.0f} MB"
    print(line)


def finish(tuner, hypermodel, task, args, project_dir: Path, epochs: int) -> int:
    """Reports, best hyperparameters, best model and its test metrics; the exit status."""
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    from keras_tuner.src.engine.trial import TrialStatus

    from tuning.hypermodel import model_name

    oracle = tuner.oracle
    rows = report.write_report(project_dir)
    trials = [oracle.trials[t] for t in sorted(oracle.trials)]
    done = [t for t in trials if t.status == TrialStatus.COMPLETED]
    failed = [t for t in trials if t.status in (TrialStatus.FAILED, TrialStatus.INVALID)]
    if args.report_rss:
        report_rss(rows)
    if not done:
        reason = f": {oracle.stop_reason}" if oracle.stop_reason else ""
        print(
            f"Search failed{reason}: none of its {len(trials)} trials completed. "
            f"Last error: {last_error(trials) or 'none recorded'}",
            file=sys.stderr,
        )
        return 1
    objective = oracle.objective.name
    best = oracle.trials[report.best_row(rows, objective, oracle.objective.direction)["trial_id"]]
    values = best.hyperparameters.values
    config = {"task": args.task, **({"data": args.data} if args.data else {})}
    if args.task_option:  # python -m zoo.train reads them from --hparams too
        config["task_options"] = parse_assignments(args.task_option, "--task-option")
    config |= replay_config(best, hypermodel, epochs=epochs, patience=args.patience, seed=args.seed)
    write_json(project_dir / "best_hparams.json", config)
    model = best_model(tuner, hypermodel, best, epochs)
    save_model(model, project_dir / "best_model.keras")
    metrics = score(model, task, "test")
    metrics |= {"trial_id": best.trial_id, objective: best.score}
    if args.cv == 1:  # a cross-validated model trained on most of the validation split
        metrics["val"] = {k: v for k, v in score(model, task, "val").items() if k != "report"}
    metrics |= {"parameters": model.count_params(), "hyperparameters": config}
    write_json(project_dir / "best_metrics.json", metrics)
    print(f"Project folder: {project_dir}")
    print(
        f"{len(done)} of {len(trials)} trials completed ({len(failed)} failed). Best trial "
        f"{best.trial_id}: {model_name(values)}, {objective} {best.score:.4f}; "
        f"{headline(task, metrics)}"
    )
    if oracle.stop_reason:
        print(f"Search stopped early: {oracle.stop_reason}", file=sys.stderr)
        return 1
    if oracle.budget_spent:
        print(
            f"Time budget of {args.time_budget / 60:g} min spent: the search ended after "
            f"{len(done)} completed trials; run it again with a new budget to go on."
        )
    return 0


def prepare(args):
    """Role, task, hypermodel and tuner from the arguments; bad input raises before any trial."""
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    from tuning import distributed
    from tuning.hypermodel import ZooHyperModel
    from tuning.tuners import make_tuner

    role = distributed.configure(args.chief, args.worker_id)
    fixed = parse_fixed(args.fix or [])
    task = load_task(args)
    defaults = training_defaults_for(task)
    epochs = args.epochs or defaults["epochs"]
    args.patience = args.patience or defaults["patience"]
    hypermodel = ZooHyperModel(
        task,
        models=args.models,
        fixed=fixed,
        seed=args.seed,
        patience=args.patience,
        epochs=epochs,
    )
    if args.cv is None:
        args.cv = CV_FOLDS if len(task.x_train) < CV_BELOW else 1
    if args.cv > 1:
        check_folds(task, args.cv)
        hypermodel.use_folds(args.cv)
    project = args.project or f"{args.task}-{args.tuner}"
    if role != "worker":
        check_resume(Path(args.dir) / project, settings_of(args, epochs), args.overwrite)
        # what writers killed mid-write left (the chief's own files; workers write in trials)
        remove_temporaries(Path(args.dir) / project, recursive=role == "local")
    # keras-tuner makes the project folder before it builds a first model, which may refuse a
    # value (--fix units=abc): a refused search leaves no folder it made behind
    made = [p for p in (Path(args.dir), Path(args.dir) / project) if not p.exists()]
    try:
        tuner = make_tuner(
            args.tuner,
            hypermodel,
            objective=task.objective,
            max_trials=args.max_trials,
            epochs=epochs,
            seed=args.seed,
            max_retries=args.max_retries,
            executions_per_trial=args.executions_per_trial * args.cv,
            directory=args.dir,
            project_name=project,
            overwrite=args.overwrite and role != "worker",  # a worker never deletes the project
        )
    except Exception:
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    tuner.worker_timeout = args.worker_timeout
    tuner.isolate_trials = args.isolate_trials
    if role != "worker":  # a worker's oracle is the chief's, over gRPC
        tuner.oracle.set_time_budget(args.time_budget)
        tuner.oracle.progress = not args.quiet
    return role, task, hypermodel, tuner, epochs


def write_settings(args, task, project_dir: Path, epochs: int) -> None:
    """search.json: how the search was started, before it starts."""
    project_dir.mkdir(parents=True, exist_ok=True)
    write_json(
        project_dir / "search.json",
        {
            "settings": settings_of(args, epochs),
            "max_trials": args.max_trials,
            "objective": {"name": task.objective[0], "direction": task.objective[1]},
            "task": task_facts(task),
            "command": " ".join(sys.argv),
            "versions": versions(),
        },
    )


def check_early(argv: list[str]) -> None:
    """The task's name and the --data path, checked before Keras starts (seconds, a minute on a
    loaded machine): a typo is refused at once. A one-line ValueError."""
    if "-h" in argv or "--help" in argv:
        return
    task = None
    if argv and not argv[0].startswith("-"):  # TASK comes first, as --help shows
        task = argv[0]
        TASKS.get(task)
    for i, arg in enumerate(argv):
        if arg == "--data" and i + 1 < len(argv):
            check_data_path(argv[i + 1], task)
        elif arg.startswith("--data="):
            check_data_path(arg.partition("=")[2], task)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:  # before the parser, whose choices import keras-tuner (and so Keras)
        check_early(argv)
        backend.load()
    except (UnknownNameError, ValueError) as err:
        print(f"python -m tuning.search: error: {err} (see --help)", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        role, task, hypermodel, tuner, epochs = prepare(args)
    except (UnknownNameError, DataError, ValueError) as err:
        parser.error(str(err))
    project_dir = Path(tuner.project_dir)
    if role != "worker":
        write_settings(args, task, project_dir, epochs)
    try:
        tuner.search(epochs=epochs, verbose=0 if args.quiet else 2)
    except KeyboardInterrupt:
        print("\nInterrupted: run the same command again to resume.", file=sys.stderr)
        return 130
    except OSError as err:  # the chief cannot listen on its address
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 1
    if role == "worker":
        print(f"Worker {tuner.tuner_id}: the chief ended the search")
        return 0
    return finish(tuner, hypermodel, task, args, project_dir, epochs)


if __name__ == "__main__":
    raise SystemExit(main())
