"""`python -m zoo.stream RUN_DIR --data FILE`: a recording streamed through a run's model.

The command line of `zoo.streaming`: the run's model is run one time step at a time with its
state carried, the output after every step goes to stream.csv and a plot to stream.png.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zoo import backend, files, plots
from zoo.cli import Parser, positive_int
from zoo.models import why_it_looks_ahead
from zoo.registry import UnknownNameError
from zoo.runs import load_model, locate_run
from zoo.streaming import Streamer, StreamError, load_recordings, play, run_preprocessing
from zoo.tasks.base import DataError


def build_parser() -> Parser:
    p = Parser(
        prog="python -m zoo.stream",
        description=(
            "Stream a recording through a zoo.train run's model one time step at a time, with "
            "the model's state carried from step to step, and write the output after every "
            "step (CSV; one a frame for runs that frame steps, e.g. har's frame_steps=4) and a "
            "plot. Raw steps get the run's preprocessing (standardisation with the training "
            "mean/std, framing). Models whose outputs read later steps (bidirectional) cannot "
            "stream and are refused."
        ),
    )
    p.add_argument("run", help="a zoo.train run folder, or a .keras file in one")
    p.add_argument(
        "--data",
        required=True,
        help=(
            "the recording: an .npz whose array 'x' (or only array) is (steps, features) of raw "
            "input, with optional per-step labels 'y'; or, for a har run, the UCI HAR zip or "
            "folder, whose test windows are joined back into each subject's continuous segments "
            "(each streamed from a reset)"
        ),
    )
    p.add_argument(
        "--subject", type=positive_int, help="har: the test subject to stream (default: the first)"
    )
    p.add_argument(
        "--reset-every",
        type=positive_int,
        help="reset the state every N input steps (default: carry it over the whole recording)",
    )
    p.add_argument("--out", help="folder for stream.csv and stream.png (default: RUN/stream)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        backend.load()
        model_path, config = locate_run(args.run)
        hp = config["hyperparameters"]
        why = why_it_looks_ahead(hp["model"])
        if why:
            raise StreamError(
                f"model {hp['model']!r} {why}: its output at a step depends on later "
                "steps, so it cannot stream; train a unidirectional model (e.g. lstm, gru)"
            )
        streamer = Streamer(load_model(model_path), run_preprocessing(config))
        recordings, class_names, what = load_recordings(args.data, config, args.subject)
        for signal, _ in recordings:
            if signal.ndim != 2 or signal.shape[1] != streamer.features:
                raise StreamError(
                    f"--data {Path(args.data)}: the recording is {signal.shape} but the run takes "
                    f"(steps, {streamer.features})"
                )
        out = Path(args.out) if args.out else model_path.parent / "stream"
        out.mkdir(parents=True, exist_ok=True)
    except (UnknownNameError, DataError, ValueError, KeyError, OSError) as err:
        parser.error(str(err).splitlines()[0] if str(err) else repr(err))

    hz = float(config["task"].get("info", {}).get("sampling_hz", 1))
    table, latency, offset = [], [], 0
    for number, (signal, labels) in enumerate(recordings, start=1):
        steps, outputs, seconds = play(streamer, signal, args.reset_every)
        latency.append(seconds)
        for t, y in zip(steps, outputs, strict=True):
            row = {"recording": number, "step": int(t), "time_s": round((offset + t + 1) / hz, 4)}
            if class_names:
                row["predicted"] = class_names[int(np.argmax(y))]
                if labels is not None:
                    row["label"] = class_names[int(labels[t])]
                row.update(
                    {f"p_{name}": f"{p:.6f}" for name, p in zip(class_names, y, strict=True)}
                )
            else:
                row.update({f"output_{i}": f"{v:.6g}" for i, v in enumerate(y)})
            table.append(row)
        offset += len(signal)
    if not table:
        parser.error(f"--data {args.data}: too short to give one output")
    seconds = np.concatenate(latency) * 1000
    summary = (
        f"{what}: {offset} steps in {len(recordings)} recording(s), {len(table)} outputs; "
        f"step latency median {np.median(seconds):.3f} ms, p99 {np.percentile(seconds, 99):.3f} ms"
    )
    if class_names and "label" in table[0]:
        right = np.mean([row["predicted"] == row["label"] for row in table])
        summary += f"; outputs matching the label {right:.2%} (all outputs, from the first step)"
    files.write_csv(out / "stream.csv", table, list(table[0]))
    plots.streamed_outputs(table, class_names, hz, summary.split(";")[0], out / "stream.png")
    print(summary)
    print(f"Wrote {out / 'stream.csv'} and {out / 'stream.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
