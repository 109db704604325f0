"""Run folders: create one, write into it atomically, read it back.

The one place that writes what a run or a search leaves behind (training, tuning, evaluation and
export all use it). Every file is written to a temporary name beside its target and renamed into
place, so a reader never sees half a file, and is created with the process' umask, like any other
file the user makes (a colleague or a web server can read the results of a shared folder).
JSON is strict: a value that is not a finite number is written as `null`.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import platform
import secrets
import sys
import time
from pathlib import Path

from zoo.tasks.base import Task, get_task


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **open_args):
    """Open a temporary file beside `path` for writing; rename it to `path` if the block ends
    without an error, else remove it. The file's mode follows the umask."""
    path = Path(path)
    tmp = temporary_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, mode, **open_args) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def temporary_name(path: Path) -> Path:
    """A new hidden name beside `path`, keeping its suffix (Keras checks `.keras`)."""
    return path.with_name(f".{path.stem}-{secrets.token_hex(4)}{path.suffix}")


def json_safe(data):
    """`data` with every float that is not finite (NaN, inf) replaced by None."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: json_safe(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(v) for v in data]
    return data


def non_finite_keys(data, prefix: str = "") -> list[str]:
    """The keys (dotted paths) of `data` whose values are floats that are not finite."""
    if isinstance(data, float):
        return [] if math.isfinite(data) else [prefix or "value"]
    if isinstance(data, dict):
        return [k for key, v in data.items() for k in non_finite_keys(v, f"{prefix}{key}.")]
    return []


def write_json(path: str | os.PathLike, data) -> None:
    """Strict JSON (NaN and inf as null), written atomically."""
    with atomic_write(path) as f:
        json.dump(json_safe(data), f, indent=2, default=str, allow_nan=False)
        f.write("\n")


def write_csv(path: str | os.PathLike, rows: list[dict], fieldnames: list[str]) -> None:
    """A CSV with a header row, written atomically (missing values left empty)."""
    with atomic_write(path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames, restval="")
        writer.writeheader()
        writer.writerows(rows)


def save_model(model, path: str | os.PathLike) -> None:
    """`model.save`, atomically: Keras writes a temporary `.keras` file that is then renamed."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def new_run_folder(task: str, model: str, out: str | os.PathLike | None = None) -> Path:
    """The run folder, created new: `out` (which must be new or empty), else
    runs/<task>-<model>-<timestamp>."""
    if out:
        folder = Path(out)
        if folder.exists() and any(folder.iterdir()):
            raise ValueError(f"--out {folder} exists and is not empty; choose a new folder")
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        folder = Path("runs") / f"{task}-{model}-{stamp}"
        n = 1
        while folder.exists():
            n += 1
            folder = folder.with_name(f"{task}-{model}-{stamp}-{n}")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_config(folder: Path, config: dict, task: Task, parameters: int) -> None:
    """config.json, written before training: settings, task facts, versions, the command."""
    write_json(
        folder / "config.json",
        {
            "hyperparameters": {k: v for k, v in config.items() if k != "out"},
            "task": task_facts(task),
            "versions": versions(),
            "parameters": parameters,
            "command": " ".join(sys.argv),
        },
    )


def write_metrics(folder: Path, metrics: dict) -> None:
    """metrics.json; a figure that is not finite becomes null, and the run's output says so."""
    bad = non_finite_keys(metrics)
    if bad:
        print(
            f"metrics.json: {', '.join(k.rstrip('.') for k in bad)} not finite (training "
            "diverged?): written as null",
            file=sys.stderr,
        )
    write_json(folder / "metrics.json", metrics)


def versions() -> dict[str, str]:
    """Versions that decide whether a run can be repeated."""
    import keras
    import numpy

    import zoo

    found = {
        "python": platform.python_version(),
        "zoo": zoo.__version__,
        "keras": keras.__version__,
    }
    found["backend"] = keras.backend.backend()
    found["numpy"] = numpy.__version__
    for package in ("tensorflow", "jax", "torch"):
        if package in sys.modules:
            found[package] = sys.modules[package].__version__
    found["machine"] = f"{platform.machine()}, {os.cpu_count()} cpus"
    return found


def task_facts(task: Task) -> dict:
    """The task's description worth saving with a run (short info values only)."""
    info = {k: v for k, v in task.info.items() if _short(v)}
    return {
        "name": task.name,
        "output_kind": task.output_kind,
        "num_outputs": task.num_outputs,
        "input_shape": list(task.input_shape),
        "class_names": list(task.class_names) if task.class_names else None,
        "samples": {s: int(len(task.split(s)[0])) for s in ("train", "val", "test")},
        "info": info,
    }


def _short(value) -> bool:
    """True for an info value worth a place in config.json: not an array, not a list of more
    than 64 items or of arrays (a series task's windows and histories)."""
    if hasattr(value, "shape"):
        return False
    return not (
        isinstance(value, list) and (len(value) > 64 or any(hasattr(v, "shape") for v in value))
    )


def locate_run(run: str | os.PathLike) -> tuple[Path, dict]:
    """The model file of a run folder (or a `.keras` file in one) and the run's config.json."""
    path = Path(run)
    model_path = path / "model.keras" if path.is_dir() else path
    config_path = model_path.parent / "config.json"
    if not model_path.is_file():
        raise ValueError(f"no model at {model_path}; give a run folder or a .keras file")
    if not config_path.is_file():
        raise ValueError(f"no config.json beside {model_path}; it names the task to evaluate on")
    try:
        return model_path, json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_path} is not valid JSON ({err})") from None


def run_task(config: dict, data=None) -> Task:
    """The task a run was trained on, rebuilt from its config.json (`data` if the data moved),
    its inputs as the run's model takes them: raw, or for a run made before models did their
    own preprocessing, preprocessed."""
    hp = config["hyperparameters"]
    task = get_task(hp["task"], data=data or hp.get("data"), **hp.get("task_options", {}))
    if config.get("task", {}).get("info", {}).get("preprocessing") != "model":
        task = task.preprocessed()
    return task


def load_model(path: str | os.PathLike):
    """`keras.models.load_model` with the zoo's layers registered; a corrupt or foreign file is a
    one-line ValueError."""
    import keras

    import zoo.fused  # noqa: F401  (registers the zoo's layers with Keras)
    import zoo.layers  # noqa: F401
    import zoo.scaling  # noqa: F401
    from zoo.fit import use_xla

    try:
        model = keras.models.load_model(path)
    except Exception as err:  # noqa: BLE001 - Keras raises many kinds for a bad file
        raise ValueError(f"cannot load {path}: {err}".splitlines()[0]) from None
    if model.compiled:  # the file holds the jit_compile of the backend it was trained on
        choice = use_xla(model, "auto")  # for inference: no ~20 s XLA compile on TF CPU
        model.jit_compile = None if choice == "auto" else choice  # None: the backend's default
    return model
