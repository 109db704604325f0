"""`python -m tuning.best TASK --time-budget 15m`: the zoo's best model for your data, in a time.

What to run on new data after `python -m zoo.train npz MODEL --data my.npz`: one command that
searches the zoo (the RNN-FCN family and the recurrent models, each first at its own defaults)
and returns a run folder whose model.keras is the winner, trained on all the training data,
with its test split evaluated once.

1. Search (`tuning.tuners.HalvingOracle`): successive halving on the clock. Each trial is scored
   by K-fold cross-validation over the train and validation splits pooled (`--cv`, default 3;
   on a training split of CV_BELOW windows or more, the validation split instead). Rungs are
   capped in time, not epochs: the budget is planned for about max(9, twice the models)
   configurations at rung 0, each fold training T seconds at most (`plan_rungs`), the best
   third of them 3T, the best of those 9T, all up to the small-data epochs; every model gets the
   same time at a rung, whatever an epoch of it costs. Each model is tried first at its own
   defaults, then random draws. No trial starts that the time left cannot hold (the trials
   finished at its rung), a trial still training at the end is cut there, and the time the
   final training will take is kept back. The search's project folder (trials.csv,
   keras-tuner's files) is DIR/PROJECT; running the same command again resumes it.
2. Retrain the winner (best cross-validated objective, earliest of equals) through
   `python -m zoo.train`'s own path for the epochs its early stopping kept (the mean over its
   folds): with folds, on the train and validation splits together (`--refit`); with the
   validation split, on the train split as the trial trained. Then the test split is
   evaluated, once.

The run folder is `zoo.train`'s (config.json, model.keras, metrics.json, history.csv, plots),
so `python -m zoo.evaluate` and `python -m zoo.export` take it; best_hparams.json in it replays
the winner with `python -m zoo.train TASK --hparams RUN_DIR/best_hparams.json`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tuning import report
from tuning.search import (
    CV_BELOW,
    DEFAULT_DIR,
    check_folds,
    check_resume,
    duration,
    parse_fixed,
    replay_config,
)
from zoo import backend
from zoo import train as train_cli
from zoo.cli import Parser, parse_assignments, positive_int
from zoo.config import load_task, resolve, training_defaults_for
from zoo.files import write_json
from zoo.models import model_defaults
from zoo.registry import UnknownNameError
from zoo.runs import new_run_folder, task_facts, versions
from zoo.scoring import headline
from zoo.tasks.base import DataError

# The models searched unless --models says: the RNN-FCN family (lstm_fcn with
# squeeze-and-excitation is mlstm_fcn) and the recurrent models a user tries first.
DEFAULT_MODELS = "lstm_fcn,gru_fcn,lstm,gru"
DEFAULT_FOLDS = 3
MAX_TRIALS = 500
RUNG0_TRIALS = 9  # configurations the budget is planned for at rung 0, at least
TRAINING_SHARE = 0.7  # of a trial's time, what is training (the rest: build, trace, validate)


def build_parser() -> Parser:
    p = Parser(
        prog="python -m tuning.best",
        description="Search the zoo for the best model for a task within a time budget "
        "(successive halving, cross-validated on the training data), retrain the winner on "
        "all the training data, evaluate it once on the test split, and leave a zoo.train run "
        "folder with it.",
        epilog="Examples: python -m tuning.best npz --data my.npz --time-budget 15m | "
        "python -m tuning.best digits --time-budget 5m --models 'lstm_fcn,gru' --seed 1",
    )
    p.add_argument("task", help="task name (see python -m zoo.train --list), e.g. npz")
    p.add_argument(
        "--data", help="data file or folder for tasks that read one (har, mnist, npz, series)"
    )
    p.add_argument(
        "--task-option",
        action="append",
        metavar="KEY=VALUE",
        help="option passed to the task, e.g. window_features=true; repeatable",
    )
    p.add_argument(
        "--time-budget",
        type=duration,
        required=True,
        metavar="TIME",
        help="the whole command's time, search and final training (e.g. 90s, 15m, 2h)",
    )
    p.add_argument(
        "--models",
        default=DEFAULT_MODELS,
        help="comma-separated globs of models to search (those that cannot serve the task, "
        "such as the FCN models on windows shorter than their kernels, are left out)",
    )
    p.add_argument(
        "--fix",
        action="append",
        metavar="NAME=VALUE[,VALUE...]",
        help="fix or narrow a hyperparameter, as tuning.search's --fix; repeatable",
    )
    p.add_argument(
        "--cv",
        type=positive_int,
        metavar="K",
        help=f"folds a trial (default: {DEFAULT_FOLDS} when the training split has fewer than "
        f"{CV_BELOW} windows, else 1: the validation split)",
    )
    p.add_argument(
        "--epochs",
        type=positive_int,
        help="epochs of the top rung (the lower ones a third and a ninth of it), early "
        "stopping aside (default: the small-data defaults' on a small training split, else "
        "the task's own)",
    )
    p.add_argument(
        "--max-trials", type=positive_int, default=MAX_TRIALS, help="most trials, all rungs"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the search and of every model")
    p.add_argument("--out", help="run folder (default: runs/<task>-<model>-<timestamp>)")
    p.add_argument("--dir", default=DEFAULT_DIR, help="folder holding search projects")
    p.add_argument("--project", help="search project under --dir (default: TASK-best)")
    p.add_argument(
        "--overwrite", action="store_true", help="start the search afresh instead of resuming it"
    )
    p.add_argument("--quiet", action="store_true", help="only the search's progress lines")
    return p


def settings_of(args, epochs: int) -> dict:
    """What defines a search: a resumed one must be started with the same."""
    return {
        "task": args.task,
        "task_options": args.task_option or [],
        "data": args.data,
        "tuner": "halving",
        "models": args.models,
        "fix": args.fix or [],
        "epochs": epochs,
        "seed": args.seed,
        "cv": args.cv,
    }


def starting_points(hypermodel, task) -> list[dict]:
    """Each candidate model at its own defaults (its builder's, and the small-data dropouts of
    `training_defaults_for` for the recurrent models), tried before any random draw; a value
    the search's space does not hold falls back to the space's default."""
    starts = []
    for model in hypermodel.models:
        values = {"model": model, **model_defaults(model)}
        defaults = training_defaults_for(task, model)
        values |= {k: defaults[k] for k in ("dropout", "recurrent_dropout") if k in defaults}
        starts.append({k: v for k, v in values.items() if v is not None})
    return starts


def plan_rungs(oracle, seconds: float) -> None:
    """Time-capped rungs for a search of `seconds`: rung 0's seconds a fold such that about
    max(RUNG0_TRIALS, 2 x starts) configurations get a rung-0 trial (each rung costs about as
    much in all as the one below: a third as many trials, three times as long), with a share of
    the time (1 - TRAINING_SHARE) left for building, tracing and validating."""
    configurations = max(RUNG0_TRIALS, 2 * len(oracle.starts))
    rungs = len(oracle.rung_epochs)
    first = TRAINING_SHARE * seconds / (rungs * configurations * oracle.executions)
    oracle.set_rung_seconds(max(1.0, first))


def prepare(args):
    """Task, hypermodel and tuner; bad input raises before anything is written."""
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    from tuning.hypermodel import ZooHyperModel
    from tuning.tuners import make_tuner

    fixed = parse_fixed(args.fix or [])
    options = parse_assignments(args.task_option, "--task-option")
    task = load_task(args.task, args.data, options)
    if task.stateful_batch:
        raise ValueError("tuning.best searches stateless models; drop the stateful option")
    if args.cv is None:
        args.cv = DEFAULT_FOLDS if len(task.x_train) < CV_BELOW else 1
    check_folds(task, args.cv)
    epochs = args.epochs or training_defaults_for(task)["epochs"]
    hypermodel = ZooHyperModel(task, models=args.models, fixed=fixed, seed=args.seed, epochs=epochs)
    if args.cv > 1:
        hypermodel.use_folds(args.cv)
    project = args.project or f"{args.task}-best"
    check_resume(Path(args.dir) / project, settings_of(args, epochs), args.overwrite)
    if args.out and Path(args.out).exists() and any(Path(args.out).iterdir()):
        raise ValueError(f"--out {args.out} exists and is not empty; choose a new folder")
    tuner = make_tuner(
        "halving",
        hypermodel,
        objective=task.objective,
        max_trials=args.max_trials,
        epochs=epochs,
        seed=args.seed,
        max_retries=0,
        executions_per_trial=args.cv,
        directory=args.dir,
        project_name=project,
        overwrite=args.overwrite,
    )
    oracle = tuner.oracle
    oracle.starts = starting_points(hypermodel, task)
    # a fold trains on (K-1)/K of the pooled windows, the final model on all of them
    oracle.refit_scale = args.cv / (args.cv - 1) if args.cv > 1 else 1.0
    return task, hypermodel, tuner, epochs


def winner_config(args, tuner, hypermodel, epochs: int) -> tuple[dict, object]:
    """The final training's configuration (as `python -m zoo.train --hparams` reads it) and
    the winning trial."""
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    from tuning.hypermodel import model_name, training_config

    oracle = tuner.oracle
    rows = report.write_report(tuner.project_dir)
    best = report.best_row(rows, oracle.objective.name, oracle.objective.direction)
    if best is None:
        return {}, None
    trial = oracle.trials[best["trial_id"]]
    config = {"task": args.task, **({"data": args.data} if args.data else {})}
    if args.task_option:
        config["task_options"] = parse_assignments(args.task_option, "--task-option")
    values = trial.hyperparameters.values
    if cut_by_its_cap(trial, hypermodel.patience):
        # its epoch count says when the clock stopped it, not how long the model needs: train
        # as zoo.train does, early stopping on the validation split, up to the top rung's epochs
        searched = {k: v for k, v in values.items() if not k.startswith("tuner/")}
        config |= training_config(searched, epochs=epochs, patience=hypermodel.patience,
                                  seed=args.seed, schedule=hypermodel.schedule(model_name(values)))  # fmt: skip
        return config, trial
    rung_epochs = values.get("tuner/epochs", epochs)
    replay = replay_config(trial, hypermodel, epochs=rung_epochs, patience=hypermodel.patience,
                           seed=args.seed)  # fmt: skip
    config |= replay
    if args.cv > 1:  # all the pooled windows, for the epochs the folds kept
        config["refit"] = True
        config.pop("early_stopping", None)
    return config, trial


def cut_by_its_cap(trial, patience: int) -> bool:
    """True when a time-capped trial (`tuner/seconds`) was cut by its cap while still
    improving: it ran fewer epochs than its rung allows (`tuner/epochs`), and its early
    stopping kept an epoch within `patience` of the last it ran."""
    values, metrics = trial.hyperparameters.values, trial.metrics
    if not values.get("tuner/seconds"):
        return False
    if not (metrics.exists("best_epoch") and metrics.exists("epochs_run")):
        return True
    ran = metrics.get_last_value("epochs_run")
    if values.get("tuner/epochs") and ran >= values["tuner/epochs"]:
        return False  # it ran every epoch of its rung
    return ran - metrics.get_last_value("best_epoch") < patience


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    try:  # before the parser: the tuner imports Keras
        backend.load()
    except backend.BackendError as err:
        print(f"python -m tuning.best: error: {err}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        task, hypermodel, tuner, epochs = prepare(args)
    except (UnknownNameError, DataError, ValueError) as err:
        parser.error(str(err))
    oracle = tuner.oracle
    oracle.set_time_budget(args.time_budget - (time.monotonic() - started))
    write_settings(args, task, Path(tuner.project_dir), epochs)
    from tuning.tuners import REFIT_SHARE  # imports Keras: after zoo.backend.load()

    plan_rungs(oracle, oracle.budget * (1 - REFIT_SHARE))
    folds = f"{args.cv}-fold cross-validation" if args.cv > 1 else "the validation split"
    print(
        f"Searching {', '.join(hypermodel.models)} on {task.name} ({len(task.x_train)} train, "
        f"{len(task.x_val)} validation windows; {folds}), rungs of "
        f"{', '.join(f'{t:.3g}' for t in oracle.rung_seconds)} s a fold (up to {epochs} "
        f"epochs), {args.time_budget / 60:g} min in all",
        flush=True,
    )
    try:
        tuner.search(epochs=epochs, verbose=0)
    except KeyboardInterrupt:
        print("\nInterrupted: run the same command again to resume.", file=sys.stderr)
        return 130
    config, trial = winner_config(args, tuner, hypermodel, epochs)
    if trial is None:
        print(
            f"{parser.prog}: error: no trial finished within the time budget "
            f"({oracle.stop_reason or 'give more time'}); the search is kept in "
            f"{tuner.project_dir} and resumes with the same command",
            file=sys.stderr,
        )
        return 1
    return final_training(parser, args, config, trial, tuner, started)


def write_settings(args, task, project_dir: Path, epochs: int) -> None:
    """search.json: how the search was started, before it starts."""
    project_dir.mkdir(parents=True, exist_ok=True)
    write_json(
        project_dir / "search.json",
        {
            "settings": settings_of(args, epochs),
            "max_trials": args.max_trials,
            "time_budget_seconds": args.time_budget,
            "objective": {"name": task.objective[0], "direction": task.objective[1]},
            "task": task_facts(task),
            "command": " ".join(sys.argv),
            "versions": versions(),
        },
    )


def final_training(parser, args, flags: dict, trial, tuner, started: float) -> int:
    """Train the winner as `python -m zoo.train --hparams` would, into the run folder; report."""
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    from tuning.hypermodel import model_name
    from zoo.fit import Diverged, train

    config = resolve({**flags, "out": args.out, "seed": args.seed}, preset="none")
    task, model = train_cli.prepare(config)
    folder = new_run_folder(config.task, config.model, config.out)
    objective = tuner.oracle.objective.name
    kept = {k: v for k, v in config.as_dict().items() if k not in ("out", "preset")}
    write_json(folder / "best_hparams.json", kept)
    values = trial.hyperparameters.values
    summary = {
        "search": str(tuner.project_dir),
        "trials": len(tuner.oracle.trials),
        "trial_id": trial.trial_id,
        "rung": int(values.get("tuner/rung", 0)) + 1,
        objective: trial.score,
        "folds": args.cv,
        "best_epoch": trial.metrics.get_last_value("best_epoch"),
    }
    if config.refit:
        how = (f"retrained on all {len(task.x_train) + len(task.x_val)} training windows for "
               f"{config.epochs} epochs")  # fmt: skip
    elif config.training().stops_early:
        how = (f"its trial was cut by its rung's time: trained on the train split with early "
               f"stopping on validation (up to {config.epochs} epochs)")  # fmt: skip
    else:
        how = f"retrained on the train split for the {config.epochs} epochs the trial kept"
    print(
        f"Best: trial {trial.trial_id}, {model_name(values)} ({objective} {trial.score:.4f}"
        f"{f' over {args.cv} folds' if args.cv > 1 else ''}); {how}",
        flush=True,
    )
    try:
        metrics = train(config, task, model, folder, verbose=0 if args.quiet else 2)
    except Diverged as err:
        print(f"{parser.prog}: error: {err}. Run folder: {folder}", file=sys.stderr)
        return 1
    summary["seconds"] = round(time.monotonic() - started, 1)
    write_json(folder / "search_summary.json", summary)
    print(f"Run folder: {folder}")
    print(
        f"{config.task} {config.model}: {headline(task, metrics)}; "
        f"{summary['seconds'] / 60:.1f} min in all ({summary['trials']} trials)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
