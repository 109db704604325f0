"""`python -m zoo.generate RUN --steps 300`: a next-step model writes a series on its own.

The command line of `zoo.generation`: from a seed window (zeros, or a real test window), the
model's forecasts are fed back `--steps` times. The run folder (or --out) gets generated.csv,
generated.png and generation.json, which says for how many steps the series stays within
`--tolerance` of the true curve: for a test seed, from the first step on, against its true
continuation; for a zero seed on `sine`, the longest stretch that follows the true curve from
wherever a window of it fits best.
"""

from __future__ import annotations

import numpy as np

from zoo import plots
from zoo.cli import Parser, non_negative_int, output_folder, positive_int
from zoo.files import atomic_path, write_json
from zoo.forecasting import horizon_windows, open_run
from zoo.generation import best_stretch, check_feeds_back, close_steps, generate
from zoo.registry import UnknownNameError


def build_parser() -> Parser:
    p = Parser(
        prog="python -m zoo.generate",
        description="Generate a series with a next-step model (sine; random_walk or series runs "
        "that forecast every channel) by feeding each prediction back as the next input.",
    )
    p.add_argument("run", help="a zoo.train run folder, or a .keras file in one")
    p.add_argument("--steps", type=positive_int, default=300, help="values to generate")
    p.add_argument(
        "--seed-series",
        choices=["zeros", "test"],
        default="zeros",
        help="first window: zeros, or a window of the test split (true continuation known)",
    )
    p.add_argument("--window", type=non_negative_int, default=0, help="which test window seeds")
    p.add_argument(
        "--tolerance",
        type=float,
        default=0.5,
        help="'close to the true curve' means an absolute error below this, in the task's units",
    )
    p.add_argument("--out", help="folder for the outputs (default: the run folder)")
    p.add_argument("--data", help="data file, if it moved since training")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.tolerance > 0:
        parser.error(f"--tolerance must be > 0, got {args.tolerance}")
    try:
        fc, task, config = open_run(args.run, args.data, purpose="generation needs")
        check_feeds_back(fc)
        truth = None
        if args.seed_series == "test":
            x, future, _ = horizon_windows(config, task, args.steps, args.data)
            if args.window >= len(x):
                raise ValueError(f"--window {args.window}: the test split has {len(x)} windows")
            seed, truth = x[args.window], future[args.window]
        else:
            seed = np.zeros(task.input_shape, dtype=np.float32)
    except (UnknownNameError, ValueError, KeyError) as err:
        parser.error(str(err))
    generated = generate(fc, seed, args.steps)
    summary = {
        "task": task.name,
        "seed_series": args.seed_series,
        "steps": args.steps,
        "tolerance": args.tolerance,
        "close_start": 0,
        "close_steps": None,
    }
    if truth is not None:
        summary.update(window=args.window, truth="the true continuation")
        summary["close_steps"] = close_steps(generated, truth, args.tolerance)
    elif task.name == "sine":
        start, length, truth = best_stretch(config, task, generated, args.tolerance)
        summary.update(truth="the true curve where it fits best", close_start=start)
        summary["close_steps"] = length
    write_outputs(output_folder(args.run, args.out), seed, generated, truth, summary)
    if truth is None:
        print(f"generated {args.steps} steps from a {args.seed_series} seed (no true curve)")
    else:
        print(
            f"generated {args.steps} steps from a {args.seed_series} seed: within "
            f"{args.tolerance} of {summary['truth']} for {summary['close_steps']} steps "
            f"from step {summary['close_start']}"
        )
    return 0


def write_outputs(folder, seed, generated, truth, summary: dict) -> None:
    """generated.csv (step, generated and true values), generated.png and generation.json."""
    folder.mkdir(parents=True, exist_ok=True)
    columns = [np.arange(len(generated))[:, None], generated]
    names = ["step"] + [f"generated_{c}" for c in range(generated.shape[1])]
    if truth is not None:
        columns.append(truth)
        names += [f"true_{c}" for c in range(truth.shape[1])]
    if generated.shape[1] == 1:
        names = [n.removesuffix("_0") for n in names]
    with atomic_path(folder / "generated.csv") as tmp:
        np.savetxt(
            tmp,
            np.hstack(columns),
            delimiter=",",
            header=",".join(names),
            comments="",
            fmt=["%d"] + ["%.6g"] * (len(names) - 1),
        )
    with atomic_path(folder / "generated.png") as tmp:
        title = f"{summary['task']}: {summary['steps']} steps from a {summary['seed_series']} seed"
        close = (summary["close_start"], summary["close_steps"])
        plots.generated_series(seed, generated, tmp, truth, close, title)
    write_json(folder / "generation.json", summary)


if __name__ == "__main__":
    raise SystemExit(main())
