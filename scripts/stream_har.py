"""Stream UCI HAR's test subjects through a trained har run, step by step, as the phone sent them.

python scripts/stream_har.py RUN_DIR --data ../shared/data/uci_har_dataset.zip

UCI HAR cut each recording into 128-step windows with 50% overlap; `zoo.recordings.segments`
joins consecutive windows of a subject back into continuous segments (window i's last 64 steps
equal window i+1's first 64), and each subject's segments, in order, make its recording. Each
raw 50 Hz step goes through `zoo.streaming.Streamer` (the run's standardisation and framing, then
the model), and a decision (argmax of the output) is read in four ways:

- carried: one stream over the subject's whole recording, state never reset;
- carried per segment: reset where a segment starts (the recording has a gap there);
- windows: two streams each reset every 128 steps, staggered by 64, so that every 64 steps one of
  them has seen exactly one of the data set's windows: its decision is the window classifier's;
- reset every 128: one stream reset every 128 steps, deciding from the 4-128 steps it has seen.

Every variant is scored at the same raw steps, every step once 128 steps of its segment have
arrived, by its latest decision against the segment's activity (each continuous segment holds
one). Prints the figures; writes the plot of one subject (default RUN/stream_har.png).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoo.cli import positive_int  # noqa: E402

WINDOW, HOP = 128, 64


def held(decision_steps, decisions, at):
    """The latest decision made at or before each step in `at` (-1 where none yet)."""
    index = np.searchsorted(decision_steps, at, side="right") - 1
    return np.where(index >= 0, decisions[np.maximum(index, 0)], -1)


def window_decisions(streamer, play, segment):
    """Decisions of two streams reset every 128 steps, staggered by 64: (steps, classes)."""
    steps, classes = [], []
    for start in (0, HOP):
        at, outputs, _ = play(streamer, segment[start:], reset_every=WINDOW)
        at = at + start
        done = (at - start + 1) % WINDOW == 0  # the stream has seen exactly 128 steps
        steps.append(at[done])
        classes.append(outputs[done].argmax(1))
    steps, classes = np.concatenate(steps), np.concatenate(classes)
    order = np.argsort(steps)
    return steps[order], classes[order]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a zoo.train har run folder")
    p.add_argument("--data", required=True, help="the UCI HAR zip or folder")
    p.add_argument("--subject", type=positive_int, help="subject to plot (default: the first)")
    p.add_argument(
        "--plot",
        help="PNG to write (default: RUN/stream_har.png; the README's figure is "
        "docs/har_stream.png)",
    )
    args = p.parse_args()

    from zoo import backend

    backend.load()
    from zoo import plots
    from zoo.recordings import segments
    from zoo.runs import load_model, locate_run, run_task
    from zoo.streaming import Streamer, play, run_preprocessing
    from zoo.tasks.har import CLASS_NAMES, load_arrays

    model_path, config = locate_run(args.run)
    model = load_model(model_path)
    streamer = Streamer(model, run_preprocessing(config))
    arrays, _ = load_arrays(args.data)
    x, y, s = arrays["x_test"], arrays["y_test"], arrays["s_test"]
    found = segments(x, y, s, HOP)
    same = int(np.sum(s[:-1] == s[1:]))
    print(
        f"test split: {len(x)} windows of {len(np.unique(s))} subjects; {same} consecutive pairs "
        f"of one subject, {same - (len(x) - len(found))} of them not continuous: "
        f"{len(found)} continuous segments of {min(len(g.signal) for g in found)}-"
        f"{max(len(g.signal) for g in found)} steps; windows whose label differs from their "
        f"segment's: {sum(int(np.sum(y[g.first : g.last + 1] != y[g.first])) for g in found)}"
    )

    task = run_task(config, args.data)
    window_model = model.predict(task.x_test, batch_size=256, verbose=0).argmax(1)
    variants = ("carried", "carried per segment", "windows", "reset every 128")
    scores = {v: [] for v in variants}
    since = []  # steps since the segment started, per scored step
    latency, model_latency, agree = [], [], 0
    plot = None
    for subject in np.unique(s):
        mine = [g for g in found if g.subject == subject]
        recording = np.concatenate([g.signal for g in mine])
        starts = np.cumsum([0] + [len(g.signal) for g in mine])
        truth = np.concatenate([g.labels for g in mine])
        scored = np.concatenate(
            [np.arange(a + WINDOW - 1, b) for a, b in zip(starts[:-1], starts[1:], strict=True)]
        )
        at, outputs, seconds = play(streamer, recording)
        latency.append(seconds)
        model_latency.append(seconds[at])
        decided = {"carried": (at, outputs.argmax(1))}
        steps, classes, win_steps, win_classes = [], [], [], []
        for g, start in zip(mine, starts, strict=False):
            a, o, _ = play(streamer, g.signal)
            steps.append(a + start)
            classes.append(o.argmax(1))
            ws, wc = window_decisions(streamer, play, g.signal)
            win_steps.append(ws + start)
            win_classes.append(wc)
            agree += int(np.sum(wc == window_model[g.first : g.last + 1]))
        decided["carried per segment"] = (np.concatenate(steps), np.concatenate(classes))
        decided["windows"] = (np.concatenate(win_steps), np.concatenate(win_classes))
        a, o, _ = play(streamer, recording, reset_every=WINDOW)
        decided["reset every 128"] = (a, o.argmax(1))
        for v in variants:
            scores[v].append(held(*decided[v], scored) == truth[scored])
        since.append(scored - np.repeat(starts[:-1], [len(g.signal) - WINDOW + 1 for g in mine]))
        if plot is None and subject == (args.subject or s[0]):
            plot = (subject, recording, truth, starts, decided)

    print(f"windows decided by the staggered streams equal to model.predict on the task's test "
          f"windows: {agree} of {len(x)}; model.predict test accuracy "
          f"{np.mean(window_model == y):.4f}")  # fmt: skip
    seconds = np.concatenate(latency) * 1000
    per_model_step = np.concatenate(model_latency) * 1000
    print(
        f"latency of one Streamer.step (ms), {len(seconds)} raw steps: median "
        f"{np.median(seconds):.4f}, p99 {np.percentile(seconds, 99):.4f}, max {seconds.max():.3f}; "
        f"the {len(per_model_step)} steps that complete a frame and run the model: median "
        f"{np.median(per_model_step):.4f}, p99 {np.percentile(per_model_step, 99):.4f}"
    )
    scored_steps = sum(len(r) for r in scores["carried"])
    print(f"\n| decision | accuracy over {scored_steps:,} scored steps |\n|---|---:|")
    for v in variants:
        print(f"| {v} | {np.mean(np.concatenate(scores[v])):.4f} |")
    since = np.concatenate(since) / 50
    edges = [WINDOW / 50, 5, 10, 20, 31]
    spans = list(zip(edges[:-1], edges[1:], strict=True))
    print("\nby time since the segment started (s; a segment is one activity, after a gap):")
    print("| decision | " + " | ".join(f"{a:g}-{b:g}" for a, b in spans) + " |")
    print("|---|" + "---:|" * (len(edges) - 1))
    for v in variants:
        right = np.concatenate(scores[v])
        cells = [right[(since >= a) & (since < b)] for a, b in spans]
        print(f"| {v} | " + " | ".join(f"{c.mean():.4f}" for c in cells) + " |")
    counts = [int(np.sum((since >= a) & (since < b))) for a, b in spans]
    print("| steps | " + " | ".join(f"{c:,}" for c in counts) + " |")

    subject, recording, truth, starts, decided = plot
    t = np.arange(len(recording)) / 50
    fig, axes = plots.figure(nrows=2, figsize=(13, 5.5))
    axes = axes[:, 0]
    axes[0].sharex(axes[1])
    for ax, v in zip(axes, ("carried", "windows"), strict=True):
        ax.plot(t, truth, "k-", lw=5, alpha=0.2, label="true activity")
        steps, classes = decided[v]
        ax.plot(steps / 50, classes, "r.", ms=2, label=f"streamed: {v}")
        for start in starts[1:-1]:
            ax.axvline(start / 50, color="0.6", lw=0.5)
        ax.set_yticks(range(len(CLASS_NAMES)), CLASS_NAMES)
        ax.legend(loc="upper right", fontsize=8)
    axes[0].set_title(
        f"UCI HAR test subject {subject} streamed at 50 Hz through {config['hyperparameters']['model']}"
        " (grey lines: gaps between continuous segments)"
    )
    axes[1].set_xlabel("time (s)")
    path = Path(args.plot) if args.plot else model_path.parent / "stream_har.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    plots.save(fig, path)
    print(f"\nWrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
