"""Run folders: create one, write its config and metrics, read it back.

Training, tuning, evaluation and export know a run folder through here; every file goes through
`zoo.files` (atomic writes, strict JSON).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import zipfile
from pathlib import Path

import numpy

import zoo
from zoo.config import RunConfig
from zoo.files import non_finite_keys, remove_temporaries, write_json
from zoo.tasks.base import Task, get_task


def new_run_folder(task: str, model: str, out: str | os.PathLike | None = None) -> Path:
    """The run folder, created new: `out` (which must be new or empty), else
    runs/<task>-<model>-<timestamp>."""
    if out:
        folder = Path(out)
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"--out {folder} is a file; give a new or empty folder")
        remove_temporaries(folder)  # what a run killed as it began left
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


def write_config(folder: Path, config: RunConfig, task: Task, parameters: int) -> None:
    """config.json, written before training: settings, task facts, versions, the command."""
    write_json(  # a resume rewrites it: the last good copy kept as config.json.bak
        folder / "config.json",
        {
            "hyperparameters": {k: v for k, v in config.as_dict().items() if k != "out"},
            "task": task_facts(task),
            "versions": versions(),
            "parameters": parameters,
            "command": " ".join(sys.argv),
        },
        keep_previous=(folder / "config.json").exists(),
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
    import keras  # lazy: keeps Keras out of `import zoo.runs` (the CLIs' --help)

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
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import keras

    import zoo.fused  # noqa: F401  (registers the zoo's layers with Keras)
    import zoo.layers  # noqa: F401
    import zoo.scaling  # noqa: F401
    import zoo.smoothing  # noqa: F401
    from zoo.xla import use_xla

    if Path(path).is_file() and not zipfile.is_zipfile(path):  # Keras says "File not found"
        raise ValueError(f"cannot load {path}: the file is corrupt (empty, truncated or not a "
                         "zip file as .keras files are); train again, or use another run")  # fmt: skip
    try:
        model = keras.models.load_model(path)
    except Exception as err:  # noqa: BLE001 - Keras raises many kinds for a bad file
        raise ValueError(f"cannot load {path}: {err}".splitlines()[0]) from None
    if model.compiled:  # the file holds the jit_compile of the backend it was trained on
        choice = use_xla(model, "auto")  # for inference: no ~20 s XLA compile on TF CPU
        model.jit_compile = None if choice == "auto" else choice  # None: the backend's default
    return model
