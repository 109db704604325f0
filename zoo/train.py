"""`python -m zoo.train TASK MODEL`: train a zoo model on a task, evaluate it, save a run folder.

The run folder holds config.json (written before training), model.keras (best validation
weights), history.csv, metrics.json, PNG plots and TensorBoard logs in tb/. The command line
lives here; configuration is `zoo.config`, training `zoo.fit`, the folder `zoo.runs`. `--help`
and `--list` import no Keras, so they answer at once.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import shutil
import sys
import tempfile
from pathlib import Path

from zoo import backend, distribute, files
from zoo.backtest import format_table
from zoo.cli import (
    Parser,
    boolean,
    learning_rate,
    non_negative_float,
    non_negative_int,
    parse_assignments,
    positive_int,
)
from zoo.config import (
    DEFAULTS,
    JIT_CHOICES,
    LR_SCHEDULES,
    MEMBER_SEED_STEP,
    OPTIMIZERS,
    SMALL_DATA,
    RunConfig,
    check_data_path,
    check_pairing,
    check_size,
    load_task,
    resolve,
    small_data_note,
    training_defaults_for,
)
from zoo.distribute import CHOICES as DISTRIBUTE_CHOICES
from zoo.distribute import is_chief
from zoo.files import is_temporary, remove_temporaries
from zoo.models import MODELS, model_defaults
from zoo.presets import PRESETS, default_preset, get_preset
from zoo.registry import UnknownNameError
from zoo.runs import new_run_folder
from zoo.scoring import headline
from zoo.tasks import TASKS, task_options
from zoo.tasks.base import DataError, training_defaults

ENVIRONMENT = (
    "Environment: RNN_ZOO_HAR_DATA=PATH reads UCI HAR from a copy you have (instead of "
    "downloading it); RNN_ZOO_CACHE=DIR keeps the parsed data set there (default "
    "$XDG_CACHE_HOME/rnn-zoo, else ~/.keras/datasets/rnn_zoo); KERAS_BACKEND=tensorflow|jax|torch."
)


# The hyperparameters with a flag of their own below; every other one a model takes gets a flag
# made from its name and default (`model_flags`), so a new family needs no CLI code.
OWN_FLAGS = ("units", "depth", "dropout", "recurrent_dropout", "l2")


def model_flags() -> dict[str, tuple[object, list[str]]]:
    """Every hyperparameter some model takes that has no flag of its own: name -> (a default,
    the models that take it)."""
    flags: dict[str, tuple[object, list[str]]] = {}
    for name in MODELS.list():
        for key, value in model_defaults(name).items():
            if key not in OWN_FLAGS:
                flags.setdefault(key, (value, []))[1].append(name)
    return flags


def _flag_type(value):
    """The argparse type of a flag whose default is `value`: the builder checks the range."""
    if isinstance(value, bool):
        return boolean
    if isinstance(value, int):
        return non_negative_int
    return float if isinstance(value, float) else str


def own_defaults(task: str | None, model: str | None) -> dict:
    """The values `python -m zoo.train TASK MODEL` trains with when a flag is left out (the
    preset TASK_MODEL, the task's training defaults, the model's hyperparameters), or {} when
    TASK and MODEL are not both known."""
    if task not in TASKS or model not in MODELS:
        return {}
    values = (
        model_defaults(model) | training_defaults(task) | DEFAULTS | {"lr_schedule": "constant"}
    )
    preset = default_preset(task, model)
    return values | (get_preset(preset) if preset else {})


def build_parser(task: str | None = None, model: str | None = None) -> Parser:
    """The parser; with TASK and MODEL known, --help shows the values they train with."""
    known = own_defaults(task, model)

    def default(key: str, otherwise: str) -> str:
        if known and key not in known:
            return f"{model} takes no {key}"
        value = known.get(key, "") if known else ""
        shown = "the optimizer's own" if value is None else value
        return f"default for {task} {model}: {shown}" if known else f"default: {otherwise}"

    p = Parser(
        prog="python -m zoo.train",
        description="Train a zoo model on a task, evaluate it on the test split and save a run "
        "folder (config, best model, history, metrics, plots, TensorBoard logs). "
        "`python -m zoo.train TASK MODEL --help` shows the defaults of that pair.",
        epilog="Examples: python -m zoo.train har lstm | python -m zoo.train echo gru --epochs 5 | "
        "python -m zoo.train har --hparams best_hparams.json | "
        "python -m zoo.train --preset har_lstm | python -m zoo.train --list. " + ENVIRONMENT,
    )
    p.add_argument("task", nargs="?", help="task name (see --list); may come from --preset")
    p.add_argument(
        "model", nargs="?", help="model name (see --list); may come from --preset or --hparams"
    )
    p.add_argument(
        "--list",
        action="store_true",
        help="list models, tasks (with their options and training defaults) and presets, then exit",
    )
    task_own, model_own = "the task's own, see --list", "the model's own, see --list"
    rate_own = "the task's own, else the optimizer's"
    p.add_argument(
        "--epochs", type=positive_int, help=f"most epochs ({default('epochs', task_own)})"
    )
    p.add_argument(
        "--batch-size", type=positive_int, help=f"batch size ({default('batch_size', task_own)})"
    )
    p.add_argument(
        "--units",
        type=positive_int,
        help=f"units a recurrent layer ({default('units', model_own)})",
    )
    p.add_argument(
        "--depth",
        type=non_negative_int,
        help=f"recurrent layers ({default('depth', model_own)})",
    )
    p.add_argument(
        "--dropout",
        type=float,
        help=f"dropout after each recurrent layer ({default('dropout', model_own)}); in the "
        "RNN-FCN models on the recurrent branch's output",
    )
    p.add_argument(
        "--recurrent-dropout",
        type=float,
        help=f"dropout on the recurrent state ({default('recurrent_dropout', '0')})",
    )
    p.add_argument(
        "--l2", type=non_negative_float, help=f"L2 penalty on kernels ({default('l2', '0')})"
    )
    for key, (value, takers) in model_flags().items():
        shown = "true or false" if isinstance(value, bool) else None
        p.add_argument(
            f"--{key.replace('_', '-')}",
            type=_flag_type(value),
            metavar=shown and "{true,false}",
            help=f"{key} of {', '.join(takers)} ({default(key, model_own)})",
        )
    p.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        help=f"optimizer ({default('optimizer', DEFAULTS['optimizer'])})",
    )
    p.add_argument(
        "--learning-rate",
        type=learning_rate,
        help=f"learning rate ({default('learning_rate', rate_own)})",
    )
    p.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        help="cosine: decay the learning rate to 0 over --epochs; plateau: halve it after "
        "--lr-patience epochs without a lower training loss, down to a tenth "
        "(default: constant; plateau for the FCN models)",
    )
    p.add_argument(
        "--lr-patience",
        type=positive_int,
        help="plateau schedule: epochs without a lower training loss before the learning rate "
        "halves (default: a twentieth of the epochs, 5 at least)",
    )
    p.add_argument(
        "--patience",
        type=positive_int,
        help=f"epochs without validation gain before stopping ({default('patience', task_own)})",
    )
    p.add_argument(
        "--early-stopping",
        action=argparse.BooleanOptionalAction,
        help="stop after --patience epochs without validation gain and keep the best epoch; "
        "--no-early-stopping trains every epoch and keeps the last (as a search's "
        "best_hparams.json replays a trial: for the epochs its early stopping found) "
        "(default: on; the RNN-FCN models on a small training split train with --refit "
        "instead unless either form is given)",
    )
    p.add_argument(
        "--refit",
        action="store_true",
        default=None,
        help="train on the train and validation splits together for exactly --epochs epochs "
        "(no early stopping; the validation figures are then not held out): a configuration "
        "whose epochs were chosen beforehand, e.g. by cross-validation (the RNN-FCN models' "
        "default on a training split under 1,000 windows)",
    )
    p.add_argument(
        "--refit-best",
        action="store_true",
        default=None,
        help="train with early stopping to find the best epoch count, then train a new model "
        "from the same seed for that many epochs on the train and validation data (a series "
        "task: every window before the test, as forecasters fit on all the history before "
        "the forecast); that model is the run's, the first run is kept in select/ (twice the "
        "training time)",
    )
    p.add_argument(
        "--seed",
        type=int,
        help="seed for data shuffling, initialisation and dropout "
        f"({default('seed', DEFAULTS['seed'])})",
    )
    p.add_argument(
        "--ensemble",
        type=positive_int,
        metavar="N",
        help="train N models alone and average their outputs (a seed ensemble): member K "
        f"uses seed SEED+{MEMBER_SEED_STEP}*(K-1), so ensembles of nearby seeds share no member; "
        f"each member's own run is in member-K/ ({default('ensemble', '1')})",
    )
    p.add_argument(
        "--jit-compile",
        choices=JIT_CHOICES,
        help="XLA compilation: auto turns it on where it pays for its ~20 s compile (one "
        "recurrent layer, a long run; see README, Speed) "
        f"({default('jit_compile', DEFAULTS['jit_compile'])})",
    )
    p.add_argument(
        "--distribute",
        choices=DISTRIBUTE_CHOICES,
        help="train on more than one device: mirrored = every local device (TensorFlow's "
        "MirroredStrategy, JAX's DataParallel), multi_worker = every worker in TF_CONFIG "
        "(TensorFlow); --batch-size is the global batch (see README, Distributed training) "
        f"({default('distribute', DEFAULTS['distribute'])})",
    )
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue a run that stopped before its end (killed, or a worker lost) from its "
        "last finished epoch, with its own settings (--epochs: a new total); with --distribute "
        "multi_worker, on every worker",
    )
    p.add_argument(
        "--data", help="data file or folder for tasks that read one (har, mnist, npz, series)"
    )
    p.add_argument(
        "--task-option",
        action="append",
        metavar="KEY=VALUE",
        help="option of the task, e.g. val_subjects=4 (har) or series_length=5000 (echo); "
        "--list shows each task's options; repeatable",
    )
    p.add_argument("--out", help="run folder (default: runs/<task>-<model>-<timestamp>)")
    p.add_argument(
        "--preset",
        help="named configuration (see --list); default: the one named TASK_MODEL if there is "
        "one (not with --hparams); 'none' for the bare defaults. Flags override it",
    )
    p.add_argument(
        "--hparams",
        help="JSON of hyperparameters, e.g. a tuning job's best_hparams.json; "
        "flags given here override it",
    )
    p.add_argument(
        "--quiet", action="store_true", help="one line an epoch instead of a progress bar"
    )
    return p


def list_everything() -> str:
    """Models (with their hyperparameters), tasks (options and training defaults) and presets."""

    def shown(values: dict, skip_none: bool = True) -> str:
        return ", ".join(f"{k}={v}" for k, v in values.items() if v is not None or not skip_none)

    width = max(len(n) for n in (*MODELS.list(), *TASKS.list(), *PRESETS.list())) + 2
    pad = " " * (width + 2)
    lines = ["Models (hyperparameters with their defaults):"]
    for name in MODELS.list():
        lines.append(f"  {name:<{width}}{MODELS.describe(name)}")
        lines.append(pad + shown(model_defaults(name)))
    lines += [
        f"Tasks (--task-option KEY=VALUE; training defaults, which flags override and which "
        f"adapt to the size of a training split under {SMALL_DATA} windows):"
    ]
    for name in TASKS.list():
        lines.append(f"  {name:<{width}}{TASKS.describe(name)}")
        lines.append(pad + "options: " + (shown(task_options(name), skip_none=False) or "none"))
        lines.append(pad + "training: " + shown(training_defaults(name)))
    lines += ["Presets (python -m zoo.train --preset NAME; TASK_MODEL ones are defaults):"]
    lines += [f"  {n:<{width}}{PRESETS.describe(n)}" for n in PRESETS.list()]
    return "\n".join(lines)


def configure(args) -> RunConfig:
    """The run's configuration from parsed arguments (see `zoo.config.resolve`)."""
    skip = ("list", "quiet", "hparams", "task_option", "preset", "resume")
    flags = {k: v for k, v in vars(args).items() if k not in skip}
    options = parse_assignments(args.task_option, "--task-option")
    return resolve(flags, preset=args.preset, hparams=args.hparams, task_options=options)


class RunEnded(Exception):
    """--resume of a run that has ended: nothing to do (a kill after its last write, say)."""


def resume_config(args) -> RunConfig:
    """The configuration of the run in --resume RUN_DIR (its config.json, else its last good
    copy), which must not have ended; only --distribute and --epochs may change. A run killed
    before its first epoch ended starts again from the first epoch."""
    keep = ("resume", "distribute", "quiet", "epochs")
    given = [k for k, v in vars(args).items() if v and k not in keep]
    if given:
        raise ValueError(
            f"--resume continues a run with its own settings; drop {given[0].replace('_', '-')}"
        )
    folder = Path(args.resume)
    if not folder.is_dir() or not any(
        (folder / name).is_file() for name in ("config.json", "config.json.bak")
    ):
        raise ValueError(f"--resume: no run at {folder} (no config.json)")
    backup = folder / "backup"
    if (folder / "metrics.json").is_file() and not backup.is_dir():
        raise RunEnded(f"{folder}: the run has ended (see its metrics.json); nothing to resume")
    try:
        saved, note = files.read_json_recovering(folder / "config.json")
        config = RunConfig.from_dict(saved["hyperparameters"])
    except (files.CorruptFile, OSError, KeyError, TypeError) as err:
        raise ValueError(
            f"--resume: {folder / 'config.json'} is not a run's config ({err})"
        ) from None
    if note:
        print(note, file=sys.stderr)
    if not backup.is_dir():
        print(
            f"{folder}: no epoch had ended before the run stopped: training starts from the "
            "first epoch",
            file=sys.stderr,
        )
    config.out = str(folder)
    if args.distribute:
        config.distribute = args.distribute
    if args.epochs:
        config.epochs = args.epochs
    return config


def check_out(config: RunConfig, resume: bool) -> None:
    """Refuse an --out that cannot become the run folder, before anything slow starts (on the
    chief: a multi_worker worker writes elsewhere, see `run_folder`)."""
    try:
        writes_it = is_chief(config.distribute)
    except ValueError:  # a bad TF_CONFIG: `prepare` refuses it in its own words
        return
    if config.out is None or resume or not writes_it:
        return
    folder = Path(config.out)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {folder} is a file; give a new or empty folder")
    if folder.is_dir() and any(not is_temporary(p.name) for p in folder.iterdir()):
        raise ValueError(f"--out {folder} exists and is not empty; choose a new folder")


def run_folder(config: RunConfig, resume: bool):
    """Where this process writes: the run folder (new unless resumed), or, on a multi_worker
    worker other than the chief, a temporary folder (a copy of the run when resuming)."""
    if is_chief(config.distribute):
        if resume:
            folder = Path(config.out)
            remove_temporaries(folder, recursive=True)  # what writers killed mid-write left
            return folder
        return new_run_folder(config.task, config.model, config.out)
    folder = Path(tempfile.mkdtemp(prefix="rnn-zoo-worker-"))
    if resume:
        shutil.copytree(config.out, folder, dirs_exist_ok=True)
    return folder


def prepare(config: RunConfig):
    """Load the task, fill the training values `config` leaves open (`RunConfig.fill`) and
    build the model, so bad input fails before anything is written."""
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    from zoo.fit import build_model

    backend.set_random_seed(config.seed)
    task = load_task(config.task, config.data, config.task_options)
    check_pairing(task, config.model)
    check_size(config, task.input_shape[-1])
    distribute.check(config, bool(task.stateful_batch))
    chosen = training_defaults_for(task, config.model)
    if config.refit_best or config.early_stopping is not None or config.patience is not None:
        chosen.pop("refit", None)  # a flag on early stopping: the validation split stays apart
    if (config.lr_schedule or chosen["lr_schedule"]) != "plateau":
        chosen.pop("lr_patience", None)
    elif "lr_patience" not in chosen:
        chosen["lr_patience"] = max(5, (config.epochs or chosen["epochs"]) // 20)
    given = {k: v for k, v in config.as_dict().items() if v is not None}
    if set(chosen) - set(given) - {"patience", "lr_schedule", "lr_patience"}:
        note = small_data_note(task, {**chosen, **given})  # what this run trains with
        if note:
            print(note)
    if task.stateful_batch and config.ensemble > 1:
        raise ValueError("--ensemble averages stateless models; drop it for a stateful task")
    if task.stateful_batch:  # the task's streams fix the batch
        if (config.batch_size or task.stateful_batch) != task.stateful_batch:
            raise ValueError(
                f"a stateful task trains in batches of its {task.stateful_batch} streams; "
                "drop --batch-size or set the task option streams"
            )
        chosen["batch_size"] = task.stateful_batch
    if task.learning_rate is not None:
        chosen.setdefault("learning_rate", task.learning_rate)
    config.fill(chosen)
    with distribute.scope(config.distribute):
        model = build_model(config, task)
    return task, model


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    positional = list(itertools.takewhile(lambda a: not a.startswith("-"), argv))
    parser = build_parser(*positional[:2]) if "-h" in argv or "--help" in argv else build_parser()
    args = parser.parse_args(argv)
    if args.list:
        print(list_everything())
        return 0
    try:
        # names, values and paths first: a refusal must not wait for TensorFlow to start
        config = resume_config(args) if args.resume else configure(args)
    except RunEnded as ended:  # the same --resume command run again after the end: fine
        print(ended)
        return 0
    except (UnknownNameError, ValueError) as err:
        parser.error(str(err))
    try:
        check_data_path(config.data, config.task)
        check_size(config, features=0)  # the recurrent layers alone; with the data's in prepare
        check_out(config, bool(args.resume))
        backend.load()
        if backend.name() == "tensorflow":
            distribute.split_cpu()  # before TensorFlow sets up its devices
        task, model = prepare(config)
        folder = run_folder(config, bool(args.resume))
    except (UnknownNameError, DataError, ValueError) as err:
        parser.error(str(err))
    try:
        return run_training(parser, config, task, model, folder, args.quiet)
    except Exception:
        if not args.resume and not (folder / "backup").exists():  # nothing to resume: no debris
            shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        if not distribute.is_chief(config.distribute):
            shutil.rmtree(folder, ignore_errors=True)  # a worker's files: not the run's


def run_training(parser, config: RunConfig, task, model, folder, quiet: bool) -> int:
    """Train the prepared model into `folder`; the exit code."""
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    from zoo.fit import Diverged, backtests, one_run, train_folds

    verbose = 2 if quiet or not sys.stdout.isatty() else 1
    preset = f" (preset {config.preset})" if config.preset else ""
    members = f", ensemble of {config.ensemble}, each" if config.ensemble > 1 else ""
    print(
        f"{config.task} / {config.model}{preset}{members}: {model.count_params():,} "
        f"parameters; {len(task.x_train)} train, {len(task.x_val)} validation, "
        f"{len(task.x_test)} test samples"
    )
    run = one_run(config)
    if backtests(config, task) > 1:
        run = train_folds
    try:
        metrics = run(config, task, model, folder, verbose=verbose)
    except Diverged as err:
        print(
            f"{parser.prog}: error: {err}. Run folder (config and history only): {folder}",
            file=sys.stderr,
        )
        return 1
    except Exception as err:
        if config.distribute != "multi_worker" or not distribute.lost_worker(err):
            raise
        where = folder if distribute.is_chief("multi_worker") else "RUN_DIR (the chief's)"
        print(
            f"{parser.prog}: error: a worker died or stopped answering "
            f"({distribute.lost_tasks(err)}); the checkpoint "
            f"and the last epoch's backup are kept: on every worker run python -m zoo.train "
            f"--resume {where} --distribute multi_worker",
            file=sys.stderr,
        )
        metrics = None
    if metrics is None:  # a lost worker, said above
        # TensorFlow's all-reduce leaves its thread pool open when a worker dies; collected
        # now, or at exit it writes a traceback below the one-line error (seen under load)
        gc.collect()
        return 1
    chief = distribute.is_chief(config.distribute)
    print(
        f"Run folder: {folder}" if chief else "Run folder: the chief's (this worker's is removed)"
    )
    if "folds" in metrics:
        mean = metrics["forecast"]
        print(f"Mean over {mean['folds']} folds (test, in the data's units):")
        print(format_table(mean["methods"], model=config.model))
    elif "forecast" in metrics:
        print("Test, in the data's units:")
        print(format_table(metrics["forecast"]["methods"], model=config.model))
    if "forecast" in metrics and "ets" in metrics["forecast"]:
        print(metrics["forecast"]["ets"])
    text = "" if "folds" in metrics else f"{headline(task, metrics)}, "
    print(
        f"{config.task} {config.model}: {text}"
        f"{metrics['epochs_run']} epochs in {metrics['train_seconds']:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
