"""Scoring a trained model on a task's split: predictions, metrics, and the one-line headline."""

from __future__ import annotations

import numpy as np

from zoo import backtest
from zoo.models import reset_states
from zoo.tasks.base import Task


def predict(model, x: np.ndarray, batch_size: int = 1024, stateful_batch: int | None = None):
    """Predictions in large batches (inference needs no small batches); a stateful model's in
    its own batches, in order, from zero state."""
    if stateful_batch:
        reset_states(model)
        batch_size = stateful_batch
    return model.predict(x, batch_size=batch_size, verbose=0)


def score(model, task: Task, split: str = "test") -> dict:
    """Loss and metrics of `model` on a split; for classification also per-class precision,
    recall, F1 and the confusion matrix (scikit-learn), on the targets that carry weight."""
    # lazy: scikit-learn (~2.7 s to import) stays out of the CLIs' start
    from sklearn.metrics import classification_report, confusion_matrix

    x, y, w = task.split(split)
    y_pred = predict(model, x, stateful_batch=task.stateful_batch)
    result = {"split": split, "samples": int(len(x))}
    keep = np.ones(y.shape, dtype=bool) if w is None else w > 0
    result["targets"] = int(keep.sum())
    if task.is_classification:
        labels = np.argmax(y_pred, axis=-1)[keep]
        truth = y[keep]
        names = list(task.class_names or range(task.num_outputs))
        probs = np.clip(y_pred[keep][np.arange(truth.size), truth], 1e-12, None)
        result["loss"] = float(-np.mean(np.log(probs)))
        result["accuracy"] = float(np.mean(labels == truth))
        result["errors"] = int(np.sum(labels != truth))
        result["report"] = classification_report(
            truth,
            labels,
            labels=range(task.num_outputs),
            target_names=[str(n) for n in names],
            output_dict=True,
            zero_division=0,
        )
        result["confusion_matrix"] = confusion_matrix(
            truth, labels, labels=range(task.num_outputs)
        ).tolist()
        result["class_names"] = [str(n) for n in names]
    else:
        err = (y_pred.reshape(y.shape) - y)[keep]
        result["loss"] = result["mse"] = float(np.mean(err**2))
        result["mae"] = float(np.mean(np.abs(err)))
        baseline = task.info.get(f"persistence_mse_{split}")
        if baseline is not None:
            result["persistence_mse"] = baseline
            result["mse_to_persistence"] = result["mse"] / baseline
        if split == "test" and "history" in task.info:  # a forecasting task: its own report
            result["forecast"] = backtest.report(task.info, y, y_pred)[0]
    return result


def headline_metrics(metrics: dict) -> dict:
    """The figures of an evaluation worth repeating in a summary."""
    return {k: metrics[k] for k in ("accuracy", "errors", "mse", "loss") if k in metrics}


def headline(task: Task, metrics: dict, split: str = "test") -> str:
    """The one figure a run reports first."""
    if task.is_classification:
        return (
            f"{split} accuracy {metrics['accuracy']:.4f} "
            f"({metrics['errors']} errors in {metrics['targets']})"
        )
    if "forecast" in metrics:
        return f"{split} {backtest.headline(metrics['forecast'])}"
    text = f"{split} MSE {metrics['mse']:.5f}"
    if "persistence_mse" in metrics:
        text += f" (persistence baseline {metrics['persistence_mse']:.5f})"
    return text
