"""The search algorithms (random, bayesian, hyperband, grid) as keras-tuner tuners with the zoo's
bookkeeping: per-trial seconds, epochs run and memory, failed searches that say so, and an oracle
that survives workers that die.

keras-tuner's oracle leaves the trial of a dead worker RUNNING forever, and its chief waits for
that worker forever. `SupervisedOracle` notes when each worker was last heard from (workers send
a heartbeat during trials, see `tuning.distributed`); `reap` sends the trial of a worker silent
for too long back for a retry (or fails it once its retries are spent) and forgets the worker.
"""

from __future__ import annotations

import os
import statistics
import time
import warnings

import keras_tuner as kt
import psutil
from keras_tuner.src.engine import oracle as oracle_module
from keras_tuner.src.engine import tuner_utils
from keras_tuner.src.engine.trial import Trial, TrialStatus

from tuning import distributed
from tuning.hypermodel import Diverged
from zoo.registry import Registry

TUNERS = Registry("tuner")


class SupervisedOracle:
    """Oracle mixin: notices silent workers and stops cleanly instead of raising.

    - `reap(timeout)`: a worker not heard from for `timeout` seconds is forgotten; its running
      trial is ended as INVALID, so keras-tuner retries it (`max_retries_per_trial`) or fails it.
    - A late report about a trial that is no longer running (its worker was reaped) is ignored,
      so no trial is recorded twice.
    - A worker asking for a trial when none is left waits (IDLE) while other trials run: one of
      them may come back for a retry.
    - Too many consecutive failures set `stop_reason` and stop the search (keras-tuner raises from
      inside `end_trial`, which would leave the trial half-ended).
    - On reload, a trial whose end was already recorded is not run again.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.last_seen: dict[str, float] = {}  # tuner id -> time.monotonic()
        self.reaped: list[str] = []
        self.stop_reason: str | None = None

    def _running(self, trial_id: str) -> str | None:
        """The tuner running `trial_id`, or None."""
        for tuner_id, trial in self.ongoing_trials.items():
            if trial.trial_id == trial_id:
                return tuner_id
        return None

    def _heard_from(self, tuner_id: str | None) -> None:
        if tuner_id is not None:
            self.last_seen[tuner_id] = time.monotonic()

    @oracle_module.synchronized
    def create_trial(self, tuner_id):
        self._heard_from(tuner_id)
        if self.stop_reason:
            self.tuner_ids.discard(tuner_id)
            return Trial(self.get_space(), status=TrialStatus.STOPPED)
        trial = super().create_trial(tuner_id)
        if trial.status == TrialStatus.STOPPED and self.ongoing_trials:
            self.tuner_ids.add(tuner_id)  # still needed: a running trial may come back
            trial.status = TrialStatus.IDLE
        return trial

    @oracle_module.synchronized
    def get_trial(self, trial_id):
        self._heard_from(self._running(trial_id))  # a worker's heartbeat
        return super().get_trial(trial_id)

    @oracle_module.synchronized
    def update_trial(self, trial_id, metrics, step=0):
        tuner_id = self._running(trial_id)
        if tuner_id is None:
            print(f"Ignoring results for trial {trial_id}: it is not running (late worker?)")
            return self.trials[trial_id]
        self._heard_from(tuner_id)
        with warnings.catch_warnings():  # a diverged trial's NaN objective has no best value
            warnings.filterwarnings("ignore", "All-NaN", RuntimeWarning)
            return super().update_trial(trial_id, metrics, step=step)

    @oracle_module.synchronized
    def end_trial(self, trial):
        tuner_id = self._running(trial.trial_id)
        if tuner_id is None:
            print(f"Ignoring the end of trial {trial.trial_id}: it is not running (late worker?)")
            return
        self._heard_from(tuner_id)
        super().end_trial(trial)

    def _check_consecutive_failures(self):
        try:
            super()._check_consecutive_failures()
        except RuntimeError as err:
            self.stop_reason = str(err).splitlines()[0]

    @oracle_module.synchronized
    def reap(self, timeout: float) -> list[str]:
        """Forget workers silent for `timeout` seconds; their trials go back for a retry."""
        now = time.monotonic()
        gone = [t for t in self.tuner_ids if now - self.last_seen.get(t, now) > timeout]
        for tuner_id in gone:
            trial = self.ongoing_trials.get(tuner_id)
            if trial is not None:
                trial.status = TrialStatus.INVALID
                trial.message = f"worker {tuner_id} stopped reporting for {timeout:g} s"
                self.end_trial(trial)  # retried, or FAILED once its retries are spent
                print(f"{trial.message}: trial {trial.trial_id} is {trial.status}", flush=True)
            else:
                print(f"worker {tuner_id} stopped reporting for {timeout:g} s", flush=True)
            self.tuner_ids.discard(tuner_id)
            self.reaped.append(tuner_id)
        return gone

    @oracle_module.synchronized
    def workers_gone(self) -> bool:
        """True when workers were reaped and none is left: nobody will finish the search."""
        return bool(self.reaped) and not self.tuner_ids and not self.ongoing_trials

    def reload(self):
        super().reload()
        # keras-tuner sends every trial that was running back for retry; one killed between
        # saving its end and leaving `ongoing_trials` already finished, so it must not rerun.
        self._retry_queue = [t for t in self._retry_queue if t not in self.end_order]


class RandomOracle(SupervisedOracle, kt.oracles.RandomSearchOracle):
    pass


class BayesianOracle(SupervisedOracle, kt.oracles.BayesianOptimizationOracle):
    pass


class HyperbandOracle(SupervisedOracle, kt.oracles.HyperbandOracle):
    pass


class GridOracle(SupervisedOracle, kt.oracles.GridSearchOracle):
    pass


def costs(started: float, epochs_run: list[int]) -> dict[str, float]:
    """A trial's costs: mean epochs run an execution, seconds since `started`, RSS in MiB."""
    return {
        "epochs_run": statistics.mean(epochs_run),
        "seconds": round(time.perf_counter() - started, 2),
        "rss_mb": round(psutil.Process(os.getpid()).memory_info().rss / 2**20, 1),
    }


class ZooTuner(kt.Tuner):
    """A keras-tuner `Tuner` that records seconds, epochs run and RSS in each trial's metrics,
    and runs the chief's server and the workers' heartbeat in distributed mode."""

    worker_timeout = distributed.DEFAULT_WORKER_TIMEOUT
    _waiting = False
    _heartbeat = None

    def run_trial(self, trial, *args, **kwargs):
        """Train as keras-tuner does, then add `epochs_run`, `seconds` and `rss_mb`.

        A diverged trial records them too, with a NaN objective (the oracle wants one).
        """
        started = time.perf_counter()
        try:
            histories = super().run_trial(trial, *args, **kwargs)
        except Diverged as err:
            metrics = {self.oracle.objective.name: float("nan")}
            self.oracle.update_trial(trial.trial_id, metrics | costs(started, [err.epochs_run]))
            raise
        metrics = tuner_utils.convert_to_metrics_dict(histories, self.oracle.objective)
        return metrics | costs(started, [len(h.history["loss"]) for h in histories])

    def search(self, *fit_args, **fit_kwargs):
        """Search; in distributed mode the chief serves the oracle until the search is over."""
        if distributed.role() == "chief":
            self.oracle.verbose = fit_kwargs.get("verbose", 1)
            self.save()
            distributed.serve(self.oracle, self.worker_timeout)
            return
        if distributed.role() == "worker":
            self._heartbeat = distributed.Heartbeat(self.oracle)
            self._heartbeat.start()
        try:
            super().search(*fit_args, **fit_kwargs)
        finally:
            if self._heartbeat:
                self._heartbeat.stop()

    def pre_create_trial(self):
        # keras-tuner asks again at once after an IDLE answer: pause instead of spinning
        if self._waiting:
            time.sleep(1)
        self._waiting = True

    def on_trial_begin(self, trial):
        self._waiting = False
        if self._heartbeat:
            self._heartbeat.trial_id = trial.trial_id
        super().on_trial_begin(trial)

    def on_trial_end(self, trial):
        if self._heartbeat:
            self._heartbeat.trial_id = None
        super().on_trial_end(trial)


class ZooHyperband(ZooTuner, kt.Hyperband):
    """Hyperband's epoch schedule and weight hand-over, with `ZooTuner`'s bookkeeping."""

    def __init__(self, oracle, hypermodel, **kwargs):
        kt.Tuner.__init__(self, oracle, hypermodel, **kwargs)  # our oracle, not Hyperband's own


@TUNERS.register
def random(objective, max_trials, epochs, **common):
    """Random search: independent random draws from the space."""
    return ZooTuner, RandomOracle(objective=objective, max_trials=max_trials, **common)


@TUNERS.register
def bayesian(objective, max_trials, epochs, **common):
    """Bayesian optimisation with a Gaussian process, after a few random trials."""
    return ZooTuner, BayesianOracle(objective=objective, max_trials=max_trials, **common)


@TUNERS.register
def hyperband(objective, max_trials, epochs, **common):
    """Hyperband: many configurations for a few epochs, the best ones trained longer (up to
    `epochs`); `max_trials` caps the number of trials."""
    oracle = HyperbandOracle(objective=objective, max_epochs=epochs, factor=3, **common)
    oracle.max_trials = max_trials
    return ZooHyperband, oracle


@TUNERS.register
def grid(objective, max_trials, epochs, **common):
    """Grid search: every combination in turn, defaults first (continuous ranges in 10 steps)."""
    return ZooTuner, GridOracle(objective=objective, max_trials=max_trials, **common)


def make_tuner(
    name: str,
    hypermodel: kt.HyperModel,
    *,
    objective: tuple[str, str],
    max_trials: int,
    epochs: int,
    seed: int,
    max_retries: int,
    executions_per_trial: int,
    directory: str,
    project_name: str,
    overwrite: bool,
) -> ZooTuner:
    """The tuner `name` over `hypermodel`; it reloads an existing project unless `overwrite`."""
    tuner_class, oracle = TUNERS.get(name)(
        kt.Objective(*objective),
        max_trials,
        epochs,
        seed=seed + 1,  # keras-tuner takes seed 0 as "no seed"
        max_retries_per_trial=max_retries,
    )
    return tuner_class(
        oracle, hypermodel, directory=directory, project_name=project_name,
        overwrite=overwrite, executions_per_trial=executions_per_trial,
    )  # fmt: skip
