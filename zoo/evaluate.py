"""`python -m zoo.evaluate RUN_DIR`: re-evaluate a saved model on its task's test split.

RUN_DIR is a run folder of `zoo.train` (or a `.keras` file inside one): its config.json names the
task and the data it was trained on, so the same split is rebuilt.
"""

from __future__ import annotations

import json

from zoo import backend
from zoo.cli import Parser
from zoo.files import json_safe
from zoo.registry import UnknownNameError
from zoo.runs import load_model, locate_run, run_task
from zoo.scoring import headline, score
from zoo.tasks.base import DataError


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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        backend.load()
        model_path, config = locate_run(args.run)
        hp = config["hyperparameters"]
        task = run_task(config, args.data)
        model = load_model(model_path)
    except (UnknownNameError, DataError, ValueError, KeyError) as err:
        parser.error(str(err))
    metrics = score(model, task, args.split)
    if args.json:
        print(json.dumps(json_safe(metrics), indent=2, allow_nan=False))
    else:
        print(f"{model_path}: {hp['task']} {headline(task, metrics, args.split)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
