"""`python -m zoo.forecast RUN [RUN ...]`: a run's forecasts, scored and plotted.

The command line of `zoo.forecasting`. A `series` run (or a backtest's folder) is scored against
naive, seasonal-naive, drift and ETS, fold by fold and on average; forecast.json and forecast.png
(history, test period, forecasts) go to the first run's folder. For sine and random_walk runs,
`--horizon H` (default 10) sets the steps ahead; every horizon step's test MSE, beside the
persistence forecast's, goes to forecast.json with a plot, forecast_horizon.png, in the first
run's folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zoo import backtest, plots
from zoo.cli import Parser, output_folder, positive_int
from zoo.files import write_json
from zoo.forecasting import run_config, score, score_series
from zoo.registry import UnknownNameError
from zoo.tasks.base import DataError


def format_table(table: dict) -> str:
    labels = [f["method"] for f in table["forecasts"]]
    lines = ["step  persistence  " + "  ".join(f"{label:>12}" for label in labels)]
    for h in range(table["horizon"]):
        cells = [f"{f['mse'][h]:12.5f}" for f in table["forecasts"]]
        lines.append(f"{h + 1:4d}  {table['persistence_mse'][h]:11.5f}  " + "  ".join(cells))
    return "\n".join(lines)


def format_series(table: dict) -> str:
    """Each fold's table (and the mean's), the models first."""
    lines = []
    for report in table["folds"]:
        start = report["test_start"][0]
        when = f"test from {start}" if start else "test: the last steps"
        more = f" (first of {report['series']} series)" if report["series"] > 1 and start else ""
        lines.append(f"fold {report['fold']}, {when}{more}, horizon {report['horizon']}:")
        lines.append(backtest.format_table(report["methods"]))
    if "mean" in table:
        lines.append(f"mean over {table['mean']['folds']} folds:")
        lines.append(backtest.format_table(table["mean"]["methods"]))
    note = table["folds"][0].get("ets")
    return "\n".join([*lines, *([note] if note else [])])


def build_parser() -> Parser:
    p = Parser(
        prog="python -m zoo.forecast",
        description="Multi-step forecasts of trained forecasting runs (sine, random_walk, series): "
        "test MSE per horizon step against persistence, in forecast.json and forecast_horizon.png.",
    )
    p.add_argument(
        "runs", nargs="+", metavar="RUN", help="run folders (or .keras files) of one task"
    )
    p.add_argument(
        "--horizon",
        type=positive_int,
        help="steps ahead to forecast (sine, random_walk: default 10; a series run forecasts "
        "the horizon it was trained for)",
    )
    p.add_argument("--out", help="folder for forecast.json and the plot (default: the first RUN)")
    p.add_argument("--data", help="data file, if it moved since training")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    series = run_config(args.runs[0]).get("hyperparameters", {}).get("task") == "series"
    try:
        if series:
            table = score_series(args.runs, args.horizon, args.data)
        else:
            table = score(args.runs, args.horizon or 10, args.data)
    except (UnknownNameError, DataError, ValueError, KeyError) as err:
        parser.error(str(err))
    if series:
        return write_series(table, output_folder(args.runs[0], args.out))
    folder = output_folder(args.runs[0], args.out)
    folder.mkdir(parents=True, exist_ok=True)
    curves = {"persistence": table["persistence_mse"]}
    curves.update({f"{f['method']} ({Path(f['run']).name})": f["mse"] for f in table["forecasts"]})
    title = f"{table['task']}: test MSE by horizon step"
    plots.horizon_mse(curves, folder / "forecast_horizon.png", title=title)
    write_json(folder / "forecast.json", table)
    print(format_table(table))
    print(f"Wrote {folder / 'forecast.json'} and {folder / 'forecast_horizon.png'}")
    return 0


def write_series(table: dict, folder: Path) -> int:
    """forecast.json and forecast.png (the last fold's forecasts) in `folder`; the tables
    printed."""
    folder.mkdir(parents=True, exist_ok=True)
    last = table["folds"][0]
    info = last.pop("info")
    for report in table["folds"][1:]:
        report.pop("info")
    forecasts = {k: np.asarray(v) for k, v in last["forecasts"].items()}
    label = " / ".join(table["models"])
    title = f"{label}: test forecasts, fold 0"
    plots.backtest_forecasts(info, forecasts, folder / "forecast.png", title=title)
    write_json(folder / "forecast.json", table)
    print(format_series(table))
    print(f"Wrote {folder / 'forecast.json'} and {folder / 'forecast.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
