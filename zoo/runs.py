"""Run folders: resolving a configuration, and writing what a run leaves behind."""

from __future__ import annotations

import inspect
import json
import os
import platform
import tempfile
from pathlib import Path

from zoo.models import MODELS, looks_ahead
from zoo.tasks.base import TASKS, Task, get_task

TRAINING_KEYS = (
    "epochs", "batch_size", "optimizer", "learning_rate", "lr_schedule", "patience", "seed",
    "ensemble",
)  # fmt: skip


def model_keys(model: str) -> list[str]:
    """The hyperparameters a registered builder takes (its keyword-only arguments)."""
    params = inspect.signature(MODELS.get(model)).parameters.values()
    return [
        p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name not in ("output_kind", "name")
    ]


def task_takes_data(task: str) -> bool:
    """True when the task reads a file given with --data."""
    return "data" in inspect.signature(TASKS.get(task)).parameters


def task_options(task: str) -> list[str]:
    """The options a registered task takes (its keyword-only arguments; --data is apart)."""
    params = inspect.signature(TASKS.get(task)).parameters.values()
    return [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name != "data"]


def load_task(task: str, data=None, options: dict | None = None) -> Task:
    """The task with --data and --task-option values, each checked against what it takes."""
    options = dict(options or {})
    unknown = [key for key in options if key not in task_options(task)]
    if unknown:
        raise ValueError(
            f"--task-option {unknown[0]}: task {task!r} takes "
            f"{', '.join(task_options(task)) or 'no options'}"
        )
    if data:
        if not task_takes_data(task):
            raise ValueError(f"task {task!r} reads no file; drop --data")
        options["data"] = data
    return get_task(task, **options)


def check_pairing(task: Task, model: str) -> None:
    """Refuse a model that would read a causal task's answers from later inputs."""
    if task.causal and looks_ahead(model):
        allowed = [m for m in MODELS.list() if not looks_ahead(m)]
        raise ValueError(
            f"model {model!r} reads sequences backwards, so on task {task.name!r} (next-step "
            f"prediction) it would see the targets. Use one of: {', '.join(allowed)}"
        )


def write_json(path: str | os.PathLike, data) -> None:
    """Write JSON through a temporary file and a rename, so the file is never half-written."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, default=str)
        f.write("\n")
    os.replace(tmp, path)


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
    if found["backend"] == "tensorflow":
        import tensorflow as tf

        found["tensorflow"] = tf.__version__
    found["machine"] = f"{platform.machine()}, {os.cpu_count()} cpus"
    return found


def task_facts(task: Task) -> dict:
    """The task's description worth saving with a run (short info values only)."""
    info = {k: v for k, v in task.info.items() if not (isinstance(v, list) and len(v) > 64)}
    return {
        "name": task.name,
        "output_kind": task.output_kind,
        "num_outputs": task.num_outputs,
        "input_shape": list(task.input_shape),
        "class_names": list(task.class_names) if task.class_names else None,
        "samples": {s: int(len(task.split(s)[0])) for s in ("train", "val", "test")},
        "info": info,
    }


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
    """The task a run was trained on, rebuilt from its config.json (`data` if the data moved)."""
    hp = config["hyperparameters"]
    return get_task(hp["task"], data=data or hp.get("data"), **hp.get("task_options", {}))


def load_model(path: str | os.PathLike):
    """`keras.models.load_model`, with a corrupt or foreign file reported in one line."""
    import keras

    try:
        return keras.models.load_model(path)
    except Exception as err:  # noqa: BLE001 - Keras raises many kinds for a bad file
        raise ValueError(f"cannot load {path}: {err}".splitlines()[0]) from None
