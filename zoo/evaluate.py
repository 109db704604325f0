"""`python -m zoo.evaluate RUN_DIR`: re-evaluate a saved model on its task's test split.

RUN_DIR is a run folder of `zoo.train` (or a `.keras` file inside one): its config.json names the
task and the data it was trained on, so the same split is rebuilt.
"""

from __future__ import annotations

import json
from pathlib import Path

from zoo.cli import Parser
from zoo.registry import UnknownNameError


def build_parser() -> Parser:
    p = Parser(
        prog="python -m zoo.evaluate",
        description="Re-evaluate a saved zoo model on its task's test split and print the metrics.",
    )
    p.add_argument("run", help="a zoo.train run folder, or a .keras file in one")
    p.add_argument(
        "--split", choices=["test", "val", "train"], default="test", help="split to score"
    )
    p.add_argument("--data", help="data file or folder, if it moved since training")
    p.add_argument("--json", action="store_true", help="print the full metrics as JSON")
    return p


def locate(run: str) -> tuple[Path, dict]:
    """The model file and the run's saved configuration."""
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from zoo.tasks.base import DataError

    try:
        model_path, config = locate(args.run)
        hp = config["hyperparameters"]
        import keras

        from zoo import get_task

        task = get_task(hp["task"], data=args.data or hp.get("data"), **hp.get("task_options", {}))
        try:
            model = keras.models.load_model(model_path)
        except Exception as err:  # a corrupt or foreign file: say so in one line
            raise ValueError(f"cannot load {model_path}: {err}".splitlines()[0]) from None
    except (UnknownNameError, DataError, ValueError, KeyError) as err:
        parser.error(str(err))
    from zoo.train import headline
    from zoo.training import evaluate

    metrics = evaluate(model, task, args.split)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(
            f"{model_path}: {hp['task']} {args.split}: "
            + headline(task, metrics).replace("test ", "")
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
