"""The search algorithms (random, bayesian, hyperband, grid) as keras-tuner tuners with the zoo's
bookkeeping: per-trial seconds, epochs run and memory, failed searches that say so, and an oracle
that survives workers that die.

keras-tuner's oracle leaves the trial of a dead worker RUNNING forever, and its chief waits for
that worker forever. `SupervisedOracle` notes when each worker was last heard from (workers send
a heartbeat during trials, see `tuning.distributed`); `reap` sends the trial of a worker silent
for too long back for a retry (or fails it once its retries are spent) and forgets the worker.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import os
import statistics
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import keras_tuner as kt
import psutil
from keras_tuner.src.engine import oracle as oracle_module
from keras_tuner.src.engine import tuner_utils
from keras_tuner.src.engine.trial import Trial, TrialStatus

from tuning import distributed, isolate
from tuning.hypermodel import Diverged
from zoo import runs
from zoo.fit import best_epoch
from zoo.registry import Registry

TUNERS = Registry("tuner")


def _write_json_atomically(path: str, state: dict) -> None:
    """What keras-tuner's `save_json` writes (`json.dumps(state)`), through a temporary file."""
    with runs.atomic_write(path) as f:
        f.write(json.dumps(state))


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
    - oracle.json and each trial.json are written atomically: a kill while keras-tuner writes
      one leaves the previous version, never a truncated file.
    """

    def save(self):
        _write_json_atomically(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        path = os.path.join(self._get_trial_dir(trial.trial_id), "trial.json")
        _write_json_atomically(path, trial.get_state())

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.last_seen: dict[str, float] = {}  # tuner id -> time.monotonic()
        self.reaped: list[str] = []
        self.stop_reason: str | None = None
        self.started: dict[str, float] = {}  # trial id -> time.monotonic() at its start
        self.durations: dict[str, float] = {}  # trial id -> seconds, finished trials
        self.search_started = time.monotonic()
        self.deadline: float | None = None
        self.budget_spent = False
        self.progress = True  # print a line after each trial

    def _running(self, trial_id: str) -> str | None:
        """The tuner running `trial_id`, or None."""
        for tuner_id, trial in self.ongoing_trials.items():
            if trial.trial_id == trial_id:
                return tuner_id
        return None

    def _heard_from(self, tuner_id: str | None) -> None:
        if tuner_id is not None:
            self.last_seen[tuner_id] = time.monotonic()

    def set_time_budget(self, seconds: float | None) -> None:
        """Start no trial once `seconds` have passed since now, nor one the time left is not
        expected to fit (shorter than the mean trial so far)."""
        self.deadline = None if seconds is None else time.monotonic() + seconds

    def out_of_time(self) -> bool:
        """True when the time budget forbids starting another trial."""
        if self.deadline is None:
            return False
        durations = list(self.durations.values())
        expected = statistics.mean(durations) if durations else 0.0
        return time.monotonic() + expected > self.deadline

    @oracle_module.synchronized
    def create_trial(self, tuner_id):
        self._heard_from(tuner_id)
        if self.stop_reason or (tuner_id not in self.ongoing_trials and self.out_of_time()):
            if not self.stop_reason:
                self.budget_spent = True
            self.tuner_ids.discard(tuner_id)
            return Trial(self.get_space(), status=TrialStatus.STOPPED)
        trial = super().create_trial(tuner_id)
        if trial.status == TrialStatus.RUNNING:
            self.started.setdefault(trial.trial_id, time.monotonic())
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
        self.save()  # keras-tuner saves before it drops the trial from ongoing_trials
        if trial.trial_id in self.started:
            self.durations[trial.trial_id] = time.monotonic() - self.started.pop(trial.trial_id)
        self.after_trial()

    def after_trial(self) -> None:
        """trials.csv rewritten, and one progress line: trials done, the best so far, time."""
        from tuning import report

        rows = report.write_trials_csv(self._project_dir)
        if not self.progress:
            return
        finished = [r for r in rows if r["status"] in ("COMPLETED", "FAILED")]
        best = report.best_row(rows, self.objective.name, self.objective.direction)
        elapsed = time.monotonic() - self.search_started
        line = f"[search] {len(finished)} of {self.max_trials} trials finished"
        if best:
            line += f"; best so far trial {best['trial_id']}: {best[self.objective.name]:.4f}"
        line += f"; {elapsed / 60:.1f} min elapsed"
        if self.deadline is not None:
            line += f", {max(0.0, self.deadline - time.monotonic()) / 60:.1f} min of budget left"
        print(line, flush=True)

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
        """Reload, and set right what a kill at any moment left behind: keras-tuner writes a
        trial's own trial.json before oracle.json, so after a kill the two may disagree. The
        trial files decide: a finished trial (COMPLETED or FAILED) is never run again, and any
        other is queued to run again, even one that oracle.json never heard of."""
        super().reload()
        before = (list(self._retry_queue), list(self.end_order), list(self.start_order))
        finished = (TrialStatus.COMPLETED, TrialStatus.FAILED)
        for trial_id in sorted(self.trials):
            trial = self.trials[trial_id]
            if trial.status in finished:
                self._retry_queue = [t for t in self._retry_queue if t != trial_id]
                if trial_id not in self.end_order:
                    self.end_order.append(trial_id)
            elif trial_id not in self._retry_queue:
                self._retry_queue.append(trial_id)
            if trial_id not in self.start_order:
                self.start_order.append(trial_id)
        if (self._retry_queue, self.end_order, self.start_order) != before:
            self.save()


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
        "executions": len(epochs_run),
        "seconds": round(time.perf_counter() - started, 2),
        "rss_mb": round(psutil.Process(os.getpid()).memory_info().rss / 2**20, 1),
    }


class ZooTuner(kt.Tuner):
    """A keras-tuner `Tuner` that records seconds, epochs run and RSS in each trial's metrics,
    and runs the chief's server and the workers' heartbeat in distributed mode.

    With `isolate_trials`, each trial trains in a fresh process (`tuning.isolate`), so the memory
    a trial leaves behind in TensorFlow goes with its process; this one only keeps the books.
    """

    worker_timeout = distributed.DEFAULT_WORKER_TIMEOUT
    isolate_trials = False
    _waiting = False
    _heartbeat = None

    def _populate_initial_space(self):
        """keras-tuner reloads a search only where this tuner's own file (tuner0.json) exists,
        and writes it after the first trial's end, after oracle.json: a kill in between started
        the search afresh and ran the finished trial again. oracle.json decides instead (the
        tuner's own state is empty)."""
        if not self._is_worker() and os.path.exists(self.oracle._get_oracle_fname()):
            self.oracle.reload()
        else:
            super()._populate_initial_space()

    def run_trial(self, trial, *args, **kwargs):
        """Train as keras-tuner does (each execution from its own seed, see
        `ZooHyperModel`), then add `epochs_run`, `seconds`, `rss_mb`, `objective_std`, the
        spread of the executions' objectives (the oracle sees their mean), and `best_epoch`,
        the mean of the epochs their early stopping kept (what a replay trains for).

        A diverged trial records them too, with a NaN objective (the oracle wants one).
        """
        started = time.perf_counter()
        self.hypermodel.execution = 0
        run = self._run_isolated if self.isolate_trials else super().run_trial
        try:
            histories = run(trial, *args, **kwargs)
        except Diverged as err:
            metrics = {self.oracle.objective.name: float("nan")}
            self.oracle.update_trial(trial.trial_id, metrics | costs(started, [err.epochs_run]))
            raise
        objective = self.oracle.objective
        metrics = tuner_utils.convert_to_metrics_dict(histories, objective)
        best = max if objective.direction == "max" else min
        values = [best(h.history[objective.name]) for h in histories]
        spread = statistics.pstdev(values) if len(values) > 1 else 0.0
        first = trial.hyperparameters.values.get("tuner/initial_epoch", 0)
        kept = [
            best_epoch(h.history, (objective.name, objective.direction), first) for h in histories
        ]
        return (
            metrics
            | costs(started, [len(h.history["loss"]) for h in histories])
            | {"objective_std": spread, "best_epoch": statistics.mean(kept)}
        )

    def _run_isolated(self, trial, *args, **kwargs):
        """`run_trial`'s training in a fresh process; a crash of that process is a crashed
        trial (retried `max_retries` times, then failed) with its reason as the message."""
        import keras

        values = trial.hyperparameters.values
        earlier = values.get("tuner/trial_id")
        fit = {k: v for k, v in kwargs.items() if k != "callbacks"}
        if "tuner/epochs" in values:  # hyperband's round, as kt.Hyperband.run_trial sets it
            fit |= {
                "epochs": values["tuner/epochs"],
                "initial_epoch": values["tuner/initial_epoch"],
            }
        job = {
            "hypermodel": self.hypermodel,
            "hp": trial.hyperparameters.get_config(),
            "objective": self.oracle.objective,
            "checkpoint": self._get_checkpoint_fname(trial.trial_id),
            "build_config": self._get_build_config_fname(trial.trial_id),
            "warm_start": earlier and self._get_checkpoint_fname(earlier),
            "executions": self.executions_per_trial,
            "callbacks": kwargs.get("callbacks", []),
            "fit": fit,
        }
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(1, context, isolate.start, (os.getpid(),)) as pool:
            try:
                results = pool.submit(isolate.train_trial, job).result()
            except BrokenProcessPool as err:
                raise RuntimeError(f"the trial's process died: {err}") from None
        histories = []
        for result in results:
            history = keras.callbacks.History()
            history.history = result
            histories.append(history)
        return histories

    def _build_and_fit_model(self, trial, *args, **kwargs):
        try:
            return super()._build_and_fit_model(trial, *args, **kwargs)
        finally:
            self.hypermodel.execution += 1

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

    def on_search_begin(self):
        """Hide what is alive now (modules, the task's arrays) from the garbage collector, so
        each collection between trials scans only what trials made: 0.6 s a pass, 3 a trial,
        became a few milliseconds (TensorFlow and Keras hold about 480,000 objects)."""
        super().on_search_begin()
        gc.collect()
        gc.freeze()

    def on_search_end(self):
        super().on_search_end()
        gc.unfreeze()

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
        oracle,
        hypermodel,
        directory=directory,
        project_name=project_name,
        overwrite=overwrite,
        executions_per_trial=executions_per_trial,
    )
