"""Every PNG the zoo draws: training curves, confusion matrix, forecasts, echo bars, search
scatters, streamed outputs.

Figures are `matplotlib.figure.Figure` objects drawn with the Agg canvas, never pyplot: nothing
is registered with pyplot's global state and the user's backend (a notebook's, say) is left as
it is. Each function writes one PNG atomically and returns its path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from zoo import files
from zoo.scoring import predict


def figure(*, nrows: int = 1, ncols: int = 1, figsize=(6.4, 4.8)):
    """A new figure and its axes (a 2-D array of them when more than one)."""
    fig = Figure(figsize=figsize)
    axes = fig.subplots(nrows, ncols, squeeze=nrows == ncols == 1)
    return fig, axes


def save(fig: Figure, path: Path) -> Path:
    """Write `fig` as a PNG atomically (`zoo.files`)."""
    fig.tight_layout()
    files.save_figure(fig, path, dpi=110, format="png")
    return path


def training_curves(history: dict[str, list[float]], path: Path) -> Path:
    """Loss and each metric, train against validation, one panel each."""
    names = [k for k in history if not k.startswith("val_") and k != "learning_rate"]
    fig, axes = figure(ncols=len(names), figsize=(5 * len(names), 3.6))
    axes = np.atleast_2d(axes)
    for ax, name in zip(axes[0], names, strict=False):
        epochs = np.arange(1, len(history[name]) + 1)
        ax.plot(epochs, history[name], label="train")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], label="validation")
        ax.set(xlabel="epoch", ylabel=name, title=name)
        ax.grid(alpha=0.3)
        ax.legend()
    return save(fig, path)


def confusion_matrix(matrix, class_names, path: Path, title: str = "Test confusion matrix") -> Path:
    """The confusion matrix with class names, drawn by scikit-learn."""
    # lazy: scikit-learn (~2.7 s to import) stays out of the CLIs' start
    from sklearn.metrics import ConfusionMatrixDisplay

    size = max(5.0, 0.55 * len(class_names) + 3)
    fig, ax = figure(figsize=(size, size * 0.85))
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=class_names).plot(
        ax=ax, cmap="Blues", colorbar=False, values_format="d"
    )
    # long class names: slanted, anchored at their tick so neighbours do not overlap
    for label in ax.get_xticklabels():
        label.set(rotation=40, ha="right", rotation_mode="anchor")
    ax.set_title(title)
    return save(fig, path)


def sequence_forecast(x, y, y_pred, path: Path, windows: int = 3) -> Path:
    """Next-step prediction on a few test windows: inputs, targets and predictions over time."""
    fig, axes = figure(ncols=windows, figsize=(5 * windows, 3.4))
    axes = np.atleast_2d(axes)
    for ax, i in zip(axes[0], range(min(windows, len(x))), strict=False):
        steps = np.arange(x.shape[1])
        ax.plot(steps, x[i, :, 0], "o-", ms=3, alpha=0.5, label="input")
        ax.plot(
            steps + 1, y[i].reshape(len(steps), -1)[:, 0], "bo", ms=5, mfc="none", label="target"
        )
        ax.plot(steps + 1, y_pred[i].reshape(len(steps), -1)[:, 0], "r.", ms=6, label="prediction")
        ax.set(xlabel="step", title=f"test window {i}")
        ax.legend(fontsize=8)
    return save(fig, path)


def series_forecast(
    actual, predicted, path: Path, baseline=None, title="Forecast vs actual"
) -> Path:
    """One-step-ahead forecasts along the test span, with the persistence forecast if given."""
    fig, ax = figure(figsize=(10, 3.6))
    ax.plot(actual, "k-", lw=1.2, label="actual")
    ax.plot(predicted, "r-", lw=1, alpha=0.8, label="forecast")
    if baseline is not None:
        ax.plot(baseline, "b--", lw=0.8, alpha=0.6, label="persistence")
    ax.set(xlabel="test step", title=title)
    ax.legend()
    return save(fig, path)


STYLES = {  # method -> matplotlib style of its forecast line
    "model": dict(color="C3", lw=2.0, marker="o", ms=3),
    "naive": dict(color="0.55", lw=1.0, ls=":"),
    "seasonal_naive": dict(color="C0", lw=1.0, ls="--"),
    "drift": dict(color="C2", lw=1.0, ls="-."),
    "ets": dict(color="C1", lw=1.2, ls="--"),
}


def backtest_forecasts(
    info: dict, forecasts: dict, path: Path, model: str = "model", limit: int = 6, title=""
) -> Path:
    """Forecasts in data units, one panel a series (the first `limit`): the recent history,
    the test period, the model's forecast and each baseline's. `info` is a series task's
    (`zoo.tasks.series`), `forecasts` {method: (series, horizon)} with "model" first."""
    shown = min(limit, len(info["series"]))
    cols = min(shown, 2)
    rows = -(-shown // cols)
    fig, axes = figure(nrows=rows, ncols=cols, figsize=(7 * cols, 3.4 * rows))
    horizon, season = info["horizon"], info["season"]
    for i, ax in enumerate(np.atleast_1d(axes).ravel()):
        if i >= shown:
            ax.axis("off")
            continue
        history, origin = np.asarray(info["history"][i]), info["test_origin"][i]
        dates = info["dates"][i]
        x = np.asarray(dates) if dates is not None else np.arange(len(history))
        start = max(0, origin - max(4 * horizon, 3 * season, info["window"]))
        ax.plot(x[start : origin + 1], history[start : origin + 1], "k-", lw=1.2, label="history")
        ax.plot(x[origin:], history[origin:], "k-", lw=2.2, alpha=0.35, label="actual (test)")
        ax.axvspan(x[origin], x[-1], color="0.9", zorder=0)
        models = [m for m in forecasts if m not in STYLES or m == "model"]
        for method, values in forecasts.items():
            style = STYLES.get(method) if method not in models else dict(STYLES["model"])
            if method in models and models.index(method):  # further models: further colours
                style["color"] = f"C{3 + models.index(method)}"
            label = model if method == "model" else method.replace("_", "-")
            ax.plot(x[origin:], np.asarray(values)[i], label=label, **style)
        ax.set_title(f"{info['series'][i]} (test from {info['test_start'][i] or f'step {origin}'})")
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return save(fig, path)


def echo_bars(x, y, y_pred, path: Path, windows: int = 3, echo_step: int = 0) -> Path:
    """Input, target and predicted bits of a few echo windows as bars, row by row."""
    fig, axes = figure(nrows=windows, ncols=3, figsize=(12, 1.6 * windows))
    for row in range(min(windows, len(x))):
        for col, (values, label) in enumerate(
            [(x[row, :, 0], "input"), (y[row], "target"), (y_pred[row], "prediction")]
        ):
            ax = axes[row][col]
            colors = ["0.7" if t < echo_step else "C0" for t in range(len(values))]
            ax.bar(np.arange(len(values)), values, color=colors)
            ax.set(ylim=(0, 1.1), yticks=[], title=f"{label} (window {row})")
    return save(fig, path)


def run_plots(task, model, history: dict, metrics: dict, folder: Path) -> None:
    """The PNGs of a run that say more than numbers, by the task's output kind."""
    if history.get("loss"):
        training_curves(history, folder / "training_curves.png")
    if task.output_kind == "classification":
        confusion_matrix(
            metrics["confusion_matrix"], metrics["class_names"], folder / "confusion_matrix.png"
        )
        return
    x, y, _ = task.split("test")
    rows = min(len(x), 512)
    sample = slice(0, rows - rows % (task.stateful_batch or 1))  # whole batches if stateful
    y_pred = predict(model, x[sample], stateful_batch=task.stateful_batch)
    if task.output_kind == "sequence_classification":
        step = task.info.get("echo_step", 0)
        echo_bars(
            x[sample],
            y[sample],
            np.argmax(y_pred, axis=-1),
            folder / "predictions.png",
            echo_step=step,
        )
    elif task.output_kind == "sequence_regression":
        sequence_forecast(x[sample], y[sample], y_pred, folder / "forecast.png")
    elif "forecasts" in metrics.get("forecast", {}):  # a forecasting task: in data units
        forecasts = {k: np.asarray(v) for k, v in metrics["forecast"]["forecasts"].items()}
        backtest_forecasts(task.info, forecasts, folder / "forecast.png", model=model.name)
    else:
        anchor = np.asarray(task.info.get("test_anchor", np.zeros(len(x))))[sample]
        series_forecast(
            anchor + y[sample, 0],
            anchor + y_pred[:, 0],
            folder / "forecast.png",
            baseline=anchor if "test_anchor" in task.info else None,
        )


def horizon_mse(
    curves: dict[str, list[float]], path: Path, title="Test MSE by horizon step"
) -> Path:
    """MSE against horizon step, one line a forecast (persistence dashed)."""
    fig, ax = figure(figsize=(7, 4))
    for label, mse in curves.items():
        style = "k--" if label == "persistence" else "o-"
        ax.plot(np.arange(1, len(mse) + 1), mse, style, ms=4, label=label)
    ax.set(xlabel="horizon step", ylabel="MSE", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def generated_series(seed, generated, path: Path, truth=None, close=None, title="") -> Path:
    """A seed window, the series generated from it and, if known, the true curve; `close`
    (start, steps) marks the stretch within tolerance of it."""
    fig, ax = figure(figsize=(10, 3.6))
    seed, generated = np.asarray(seed), np.asarray(generated)
    ax.plot(np.arange(-len(seed), 0), seed[:, 0], "-", color="0.5", label="seed")
    if truth is not None:
        ax.plot(np.arange(len(truth)), np.asarray(truth)[:, 0], "k-", lw=1.2, label="true curve")
    ax.plot(np.arange(len(generated)), generated[:, 0], "r-", lw=1, label="generated")
    if close is not None and close[1] is not None:
        ax.axvspan(close[0], close[0] + close[1], color="b", alpha=0.1, label="within tolerance")
    ax.set(xlabel="generated step", title=title)
    ax.legend(fontsize=8)
    return save(fig, path)


def search_scatter(rows, x: str, colour: str, objective: str, best: dict, path: Path) -> Path:
    """A search's objective against `x` (log axis), one colour per value of `colour`; the best
    trial ringed."""
    fig, ax = figure(figsize=(6.4, 4.2))
    for group in sorted({str(r.get(colour)) for r in rows}):
        points = [r for r in rows if str(r.get(colour)) == group]
        ax.scatter([r[x] for r in points], [r[objective] for r in points], label=group, alpha=0.8)
    ax.scatter([best[x]], [best[objective]], s=160, facecolors="none", edgecolors="k", label="best")
    ax.set_xscale("log", base=2 if x == "units" else 10)
    ax.set(xlabel=x, ylabel=objective, title=f"{objective} against {x}, by {colour}")
    ax.grid(alpha=0.3)
    ax.legend(title=colour, fontsize=8)
    return save(fig, path)


def streamed_outputs(table: list[dict], class_names, hz: float, title: str, path: Path) -> Path:
    """A stream's outputs over time: the predicted class (and the true one where known), or
    each output value."""
    fig, ax = figure(figsize=(12, 3.6))
    t = np.array([row["time_s"] for row in table])
    if class_names:
        index = {name: i for i, name in enumerate(class_names)}
        if table[0].get("label") not in (None, ""):
            truth = [index.get(row["label"], np.nan) for row in table]
            ax.plot(t, truth, "k-", lw=4, alpha=0.25, label="true")
        ax.plot(t, [index[row["predicted"]] for row in table], "r.", ms=2, label="streamed")
        ax.set_yticks(range(len(class_names)), class_names)
    else:
        for key in [k for k in table[0] if k.startswith("output_")]:
            ax.plot(t, [row[key] for row in table], lw=1, label=key)
    ax.set(xlabel=f"time (s, {hz:g} steps a second)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    return save(fig, path)
