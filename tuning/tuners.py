"""The search algorithms (random, bayesian, hyperband, grid) as keras-tuner tuners with the zoo's
bookkeeping: per-trial seconds, epochs run and memory, failed searches that say so, and an oracle
that survives workers that die.

keras-tuner's oracle leaves the trial of a dead worker RUNNING forever, and its chief waits for
that worker forever. `SupervisedOracle` notes when each worker was last heard from (workers send
a heartbeat during trials, see `tuning.distributed`); `reap` sends the trial of a worker silent
for too long back for a retry (or fails it once its retries are spent) and forgets the worker.
"""

from __future__ import annotations

import contextlib
import gc
import glob
import json
import multiprocessing
import os
import statistics
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import keras
import keras_tuner as kt
import numpy as np
import psutil
from keras_tuner.src.engine import metrics_tracking, tuner_utils
from keras_tuner.src.engine import oracle as oracle_module
from keras_tuner.src.engine.trial import Trial, TrialStatus

from tuning import distributed, isolate, report
from tuning.hypermodel import Diverged, model_name
from zoo import files
from zoo.fit import best_epoch
from zoo.registry import Registry

TUNERS = Registry("tuner")
FINISHED = (TrialStatus.COMPLETED, TrialStatus.FAILED)


def write_state(path: str, state: dict) -> None:
    """A keras-tuner state file (oracle.json, trial.json, tuner0.json) as keras-tuner's
    `save_json` writes it (`json.dumps`: a diverged trial's NaN stays NaN, which it reads back),
    but atomically (`zoo.files`), its previous version kept as NAME.bak."""
    files.write_text(path, json.dumps(state), keep_previous=True)


class OracleStateLost(Exception):
    """oracle.json and its last good copy are unreadable; the trials were loaded."""


class AtomicSaveBestEpoch(tuner_utils.SaveBestEpoch):
    """keras-tuner's checkpoint of a trial's best epoch, written atomically (its own writes
    the .weights.h5 in place: a kill mid-write leaves a torn file)."""

    def _save_model(self):
        files.save_weights(self.model, self.filepath)


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
    - On reload, a trial whose end was already recorded is not run again, and a search killed
      at any instant goes on as it would have (see `reload`).
    - oracle.json and each trial.json are written atomically (`write_state`): a kill while one
      is written leaves the previous version, never a truncated file. One found empty or
      truncated anyway (a disk error, a copy) is read from its last good copy, or rebuilt.
    """

    def save(self):
        write_state(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        path = os.path.join(self._get_trial_dir(trial.trial_id), "trial.json")
        write_state(path, trial.get_state())

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.last_seen: dict[str, float] = {}  # tuner id -> time.monotonic()
        self.reaped: list[str] = []
        self.stop_reason: str | None = None
        self.started: dict[str, float] = {}  # trial id -> time.monotonic() at its start
        self.durations: dict[str, float] = {}  # trial id -> seconds, finished trials
        self.search_started = time.monotonic()
        self.deadline: float | None = None
        self.budget: float | None = None
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
        self.budget = seconds

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
        rows = report.write_trials_csv(self._project_dir)
        if self.progress:
            print(self.progress_line(rows), flush=True)

    def progress_line(self, rows: list[dict]) -> str:
        """Trials finished, the best so far, time elapsed and budget left."""
        finished = [r for r in rows if r["status"] in ("COMPLETED", "FAILED")]
        best = report.best_row(rows, self.objective.name, self.objective.direction)
        elapsed = time.monotonic() - self.search_started
        line = f"[search] {len(finished)} of {self.max_trials} trials finished"
        if best:
            line += f"; best so far trial {best['trial_id']}: {best[self.objective.name]:.4f}"
        line += f"; {elapsed / 60:.1f} min elapsed"
        if self.deadline is not None:
            line += f", {max(0.0, self.deadline - time.monotonic()) / 60:.1f} min of budget left"
        return line

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

    def all_done(self) -> bool:
        """True when every trial the search may run has finished: none running, none waiting
        for a retry, `max_trials` made."""
        return (
            not self.ongoing_trials
            and not self._retry_queue
            and self.max_trials is not None
            and len(self.trials) >= self.max_trials
            and all(t.status in FINISHED for t in self.trials.values())
        )

    @oracle_module.synchronized
    def workers_gone(self) -> bool:
        """True when workers were reaped and none is left: nobody will finish the search."""
        return bool(self.reaped) and not self.tuner_ids and not self.ongoing_trials

    def reload(self):
        """Reload, and set right what a kill at any instant left behind.

        keras-tuner writes a new trial's trial.json before oracle.json, and an ended trial's
        trial.json before oracle.json: after a kill the two may disagree, and the trial files
        decide. A finished trial (COMPLETED or FAILED) is never run again; any other is queued
        to run again from scratch (its partial metrics dropped). A trial that oracle.json never
        heard of (a kill inside `create_trial`) has its creation finished: the oracle draws
        again from the state it saved, so the random state moves on as it did before the kill
        and the next trials are the ones an uninterrupted search would draw.

        A state file found empty or truncated is read from its last good copy (NAME.bak), with
        a line saying so; a trial.json with none is recorded as FAILED (its values are lost);
        oracle.json with none raises `OracleStateLost` after the trials are loaded (the tuner
        then rebuilds it, see `rebuild`).
        """
        for fname in sorted(glob.glob(os.path.join(self._project_dir, "trial_*", "trial.json"))):
            trial = self._load_trial(fname)
            self.trials[trial.trial_id] = trial
        try:
            state, note = files.read_json_recovering(self._get_oracle_fname(), repair=True)
        except (files.CorruptFile, OSError) as err:
            raise OracleStateLost(str(err)) from None
        if note:
            print(note, flush=True)
        known = set(self.trials)
        state["ongoing_trials"] = {
            tuner: trial for tuner, trial in state["ongoing_trials"].items() if trial in known
        }
        try:
            self.set_state(state)
        except KeyError as err:
            raise RuntimeError(
                f"{self._get_oracle_fname()} is not a keras-tuner oracle's state (no {err}): "
                "pass --overwrite to start again, or choose another --project"
            ) from None
        for trial in self.ongoing_trials.values():  # as keras-tuner's reload: run them again
            self._retry_queue.append(trial.trial_id)
        self.ongoing_trials = {}
        self._set_right()

    def _load_trial(self, fname: str) -> Trial:
        """A trial from its file, else its last good copy; else a FAILED stand-in."""
        try:
            state, note = files.read_json_recovering(fname, repair=True)
            trial = Trial.from_state(state)
        except (files.CorruptFile, OSError, KeyError, TypeError, ValueError) as err:
            trial_id = os.path.basename(os.path.dirname(fname)).removeprefix("trial_")
            trial = Trial(self.get_space(), trial_id=trial_id, status=TrialStatus.FAILED)
            trial.message = f"its trial.json was lost ({err}); recorded as failed"
            note = f"trial {trial_id}: {trial.message}"
            self._save_trial(trial)
        if note:
            print(note, flush=True)
        return trial

    def _set_right(self) -> None:
        """Make oracle.json's state agree with the trial files (see `reload`)."""
        before = json.dumps(self.get_state(), sort_keys=True, default=str)
        for trial_id in sorted(self.trials):
            trial = self.trials[trial_id]
            if trial_id not in self.start_order:  # its creation was cut short: finish it
                self._finish_creation(trial)
            if trial.status in FINISHED:
                self._retry_queue = [t for t in self._retry_queue if t != trial_id]
                if trial_id not in self.end_order:  # its end was cut short: record it
                    self.end_order.append(trial_id)
                    self._run_times[trial_id] += 1
                continue
            if trial.status == TrialStatus.RUNNING:  # killed mid-trial: partial metrics go
                trial.metrics = metrics_tracking.MetricsTracker()
                trial.score, trial.best_step = None, 0
            self.end_order = [t for t in self.end_order if t != trial_id]  # not ended after all
            if trial_id not in self._retry_queue:
                self._retry_queue.append(trial_id)
        if json.dumps(self.get_state(), sort_keys=True, default=str) != before:
            self.save()

    def _finish_creation(self, trial: Trial) -> None:
        """What `create_trial` does after `populate_space` for a trial whose trial.json was
        written and oracle.json not: the oracle draws again from its saved state (the same
        draw, moving the random state on as it did), then records the trial's values."""
        with contextlib.suppress(Exception), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.populate_space(trial.trial_id)
        self._record_values(trial)
        self.start_order.append(trial.trial_id)

    def rebuild(self) -> None:
        """oracle.json from the trial files, when neither it nor its last good copy reads: each
        trial is drawn again in order (so the random state moves on as it did) and recorded;
        finished ones as ended, others queued to run again. Needs the search space (the tuner
        fills it before)."""
        trials, self.trials = self.trials, {}
        for trial_id in sorted(trials):
            self.trials[trial_id] = trials[trial_id]
            self._finish_creation(trials[trial_id])
        self._set_right()
        self.save()
        print(
            f"{self._get_oracle_fname()} was empty or truncated and had no good copy: rebuilt "
            f"from the {len(self.trials)} trials' trial.json files",
            flush=True,
        )


class RandomOracle(SupervisedOracle, kt.oracles.RandomSearchOracle):
    pass


class BayesianOracle(SupervisedOracle, kt.oracles.BayesianOptimizationOracle):
    pass


class HyperbandOracle(SupervisedOracle, kt.oracles.HyperbandOracle):
    pass


class GridOracle(SupervisedOracle, kt.oracles.GridSearchOracle):
    pass


class HalvingOracle(SupervisedOracle, kt.Oracle):
    """Asynchronous successive halving (ASHA, Li et al. 2020) that plans on a clock.

    Rung r trains up to `rung_epochs[r]` epochs (the largest is `max_epochs`, each rung
    `factor` times the one below), or with `set_rung_seconds`, up to `rung_seconds[r]` seconds
    an execution (each rung `factor` times the one below) and `max_epochs`: every model gets
    the same time at a rung, whatever an epoch of it costs. Whenever a trial may start, the
    best trial of a rung that ranks in the top 1/`factor` of the trials finished there and has
    not gone up is promoted: the same values at the next rung, trained afresh (the highest rung
    first); otherwise a new configuration starts at rung 0: first `starts` (values to try
    before any random draw, such as each model's defaults), then random draws. Early stopping
    works inside a rung.

    With a time budget, a trial starts only where its expected cost fits in the time left less
    `reserve()` (what retraining the best trial so far on all the data will take, when
    `refit_scale` is set). A promotion that does not fit gives way to a new rung-0 trial; when
    not even that fits, the search ends. A trial still training when the budget is out is cut
    there (`trial_deadline`, see `Deadline`). Rungs and promotions are read off the trials' own
    values (`tuner/rung`, `tuner/parent`), so a resumed search goes on where it stopped.
    """

    def __init__(
        self, *args, max_epochs: int, factor: int = 3, rungs: int = 3, starts=(), **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.factor, self.starts, self.max_epochs = factor, [dict(s) for s in starts], max_epochs
        self.rung_epochs = rung_schedule(max_epochs, factor, rungs)
        self.rung_seconds: list[float] | None = None
        self.refit_scale: float | None = None  # data a refit sees / data a fold trains on

    def set_rung_seconds(self, first: float) -> None:
        """Time-capped rungs: `first` seconds an execution at rung 0, `factor` times more at
        each rung above (as many rungs as `rung_epochs`); every rung up to `max_epochs`."""
        self.rung_seconds = [first * self.factor**r for r in range(len(self.rung_epochs))]

    def _compute_values_hash(self, values):
        """A configuration's hash, whatever its rung (as hyperband's)."""
        kept = {k: v for k, v in values.items() if not k.startswith("tuner/")}
        return super()._compute_values_hash(kept)

    # ---- costs

    def _finished(self) -> list:
        return [t for t in self.trials.values() if t.status == TrialStatus.COMPLETED]

    def _seconds_an_epoch(self) -> dict[str, float]:
        """Model -> seconds an epoch an execution (all costs in), over its finished trials."""
        spent: dict[str, list[float]] = {}
        for trial in self._finished():
            metric = trial.metrics.get_last_value
            epochs = (metric("epochs_run") or 0) * (metric("executions") or 1)
            if epochs > 0 and metric("seconds"):
                model = trial.hyperparameters.values.get("model")
                spent.setdefault(model, []).append(metric("seconds") / epochs)
        return {model: statistics.mean(values) for model, values in spent.items()}

    def expected_seconds(self, values: dict, rung: int) -> float:
        """What a trial of `values` at `rung` is expected to take: with time-capped rungs the
        mean of the trials finished at that rung (the cap and a quarter before any), else its
        model's seconds an epoch so far times the rung's epochs (0 before any trial ended)."""
        if self.rung_seconds is not None:
            same = [
                t.metrics.get_last_value("seconds")
                for t in self._finished()
                if int(t.hyperparameters.values.get("tuner/rung", 0)) == rung
            ]
            same = [s for s in same if s]
            if same:
                return statistics.mean(same)
            return 1.25 * self.rung_seconds[rung] * self.executions
        rates = self._seconds_an_epoch()
        if not rates:
            return 0.0
        rate = rates.get(values.get("model"), max(rates.values()))
        return rate * self.rung_epochs[rung] * self.executions

    executions = 1  # the tuner's executions a trial (set by make_tuner)

    def reserve(self) -> float:
        """Seconds to keep for retraining the best trial so far on all the data (0 without
        `refit_scale`): its model's seconds an epoch times the epochs it kept, scaled."""
        if not self.refit_scale:
            return 0.0
        floor = REFIT_SHARE * (self.budget or 0.0)  # before any measurement, and for overheads
        best = self._best_trial()
        if best is None:
            return floor
        rate = self._seconds_an_epoch().get(best.hyperparameters.values.get("model"), 0.0)
        kept = best.metrics.get_last_value("best_epoch") or self.rung_epochs[-1]
        return max(floor, rate * kept * self.refit_scale)

    def _best_trial(self):
        done = [t for t in self._finished() if t.score is not None and np.isfinite(t.score)]
        if not done:
            return None
        sign = -1 if self.objective.direction == "max" else 1
        return min(done, key=lambda t: (sign * t.score, int(t.trial_id)))

    def time_left(self) -> float:
        """Seconds of the budget left for trials (the refit's reserve kept back); inf without."""
        if self.deadline is None:
            return float("inf")
        return self.deadline - time.monotonic() - self.reserve()

    def trial_deadline(self) -> float | None:
        """The `time.monotonic()` at which a trial starting now must stop (None: no budget)."""
        return None if self.deadline is None else self.deadline - self.reserve()

    def out_of_time(self) -> bool:
        """True when not even a rung-0 trial fits in the time left."""
        if self.deadline is None:
            return False
        if self.time_left() <= 0:
            return True
        if self.rung_seconds is not None:
            return self.expected_seconds({}, 0) > self.time_left()
        rates = self._seconds_an_epoch()
        cheapest = min(rates.values()) if rates else 0.0
        return cheapest * self.rung_epochs[0] * self.executions > self.time_left()

    # ---- choosing the next trial

    def _rung(self, trial) -> int:
        return int(trial.hyperparameters.values.get("tuner/rung", 0))

    def _promotion(self):
        """(trial, rung) of the next trial to go up a rung, highest rung first; else None."""
        by_rung: dict[int, list] = {}
        parents = {t.hyperparameters.values.get("tuner/parent") for t in self.trials.values()}
        for trial in self.trials.values():
            by_rung.setdefault(self._rung(trial), []).append(trial)
        sign = -1 if self.objective.direction == "max" else 1
        for rung in range(len(self.rung_epochs) - 2, -1, -1):
            done = [
                t
                for t in by_rung.get(rung, [])
                if t.status == TrialStatus.COMPLETED and t.score is not None
                and np.isfinite(t.score)
            ]  # fmt: skip
            top = sorted(done, key=lambda t: (sign * t.score, int(t.trial_id)))
            for trial in top[: len(done) // self.factor]:
                if trial.trial_id not in parents:
                    return trial, rung + 1
        return None

    def _next_start(self) -> dict | None:
        """Values of the next new configuration: a start not tried yet (see `complete`), else
        a random draw."""
        for start in self.starts:
            values = self.complete(start)
            if values is not None and not self._duplicate(values):
                return values
        return self._random_values()

    def complete(self, start: dict) -> dict | None:
        """`start` as a trial's values: its values the space holds, and the default of every
        other active hyperparameter (keras-tuner would draw them at random); None when the
        space has not its model."""
        space = {hp.name: hp for hp in self.hyperparameters.space}
        hps = self.hyperparameters.copy()
        hps.values = {k: v for k, v in start.items() if k in space and allowed(space[k], v)}
        if "model" in start and hps.values.get("model") != start["model"]:
            return None
        for hp in hps.space:
            if hps.is_active(hp) and hp.name not in hps.values:
                hps.values[hp.name] = hp.default
        return {k: v for k, v in hps.values.items() if hps.is_active(k)}

    def populate_space(self, trial_id):
        promotion = self._promotion()
        if promotion is not None:
            parent, rung = promotion
            values = dict(parent.hyperparameters.values)
            if self.expected_seconds(values, rung) <= self.time_left():
                return self._start(values, rung, parent=parent.trial_id)
        values = self._next_start()
        if values is None:  # the space is exhausted
            return {"status": "IDLE" if self.ongoing_trials else "STOPPED"}
        if self.expected_seconds(values, 0) > self.time_left():
            self.budget_spent = True
            return {"status": "IDLE" if self.ongoing_trials else "STOPPED"}
        return self._start(values, 0)

    def _start(self, values: dict, rung: int, parent: str | None = None) -> dict:
        values = {k: v for k, v in values.items() if not k.startswith("tuner/")}
        if self.rung_seconds is None:
            values |= {"tuner/rung": rung, "tuner/epochs": self.rung_epochs[rung]}
        else:
            values |= {"tuner/rung": rung, "tuner/epochs": self.max_epochs}
            values["tuner/seconds"] = round(self.rung_seconds[rung], 1)
        values["tuner/initial_epoch"] = 0
        if parent is not None:
            values["tuner/parent"] = parent
        return {"status": "RUNNING", "values": values}

    def progress_line(self, rows: list[dict]) -> str:
        """The last trial (model, rung, objective), trials so far, the best, time left."""
        name = self.objective.name
        last = max(rows, key=lambda r: int(r["trial_id"])) if rows else None
        line = "[best]"
        if last is not None:
            rung = int(last.get("tuner/rung") or 0)
            figure = last.get(name)
            shown = f"{figure:.4f}" if isinstance(figure, float) else last["status"]
            cap = last.get("tuner/seconds")
            size = f"{cap:g} s a fold" if cap else f"{self.rung_epochs[rung]} epochs"
            line += (
                f" trial {last['trial_id']} {last.get('model')} at rung {rung + 1} of "
                f"{len(self.rung_epochs)} ({size}): {name} {shown};"
            )
        best = report.best_row(rows, name, self.objective.direction)
        line += f" {len(rows)} trials"
        if best:
            model = model_name({k: v for k, v in best.items() if k in ("model", "bidirectional")})
            line += f", best trial {best['trial_id']} ({model}) {best[name]:.4f}"
        line += f"; {(time.monotonic() - self.search_started) / 60:.1f} min elapsed"
        if self.deadline is not None:
            line += f", {max(0.0, self.deadline - time.monotonic()) / 60:.1f} min left"
        return line


# The share of a time budget kept back for the final training at least (its evaluation, plots
# and saving included), before the winner's own cost is measured.
REFIT_SHARE = 0.1


def allowed(hp, value) -> bool:
    """True when hyperparameter `hp` can take `value` (a choice among its values, a number in
    its range)."""
    if isinstance(hp, kt.engine.hyperparameters.Fixed):
        return value == hp.value
    if isinstance(hp, kt.engine.hyperparameters.Choice):
        return value in hp.values
    if isinstance(hp, kt.engine.hyperparameters.Boolean):
        return isinstance(value, bool)
    if isinstance(hp, (kt.engine.hyperparameters.Int, kt.engine.hyperparameters.Float)):
        return hp.min_value <= value <= hp.max_value
    return False


def rung_schedule(max_epochs: int, factor: int, rungs: int) -> list[int]:
    """Epochs of each rung, lowest first: `max_epochs` divided by factor**k, at least 1 and
    strictly rising (fewer rungs where `max_epochs` is small)."""
    epochs = [max(1, round(max_epochs / factor**k)) for k in range(rungs - 1, -1, -1)]
    return sorted(set(epochs))


class TimeCap(keras.callbacks.Callback):
    """Stop training once its training steps took `seconds` (after the batch under way): a
    time-capped rung's execution (see `HalvingOracle.set_rung_seconds`). Only the steps count,
    not the first (it traces and compiles the model) nor validation, so a rung gives every
    model the same time to learn, whatever its start-up costs."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def on_train_begin(self, logs=None):
        self.spent, self.steps = 0.0, 0

    def on_train_batch_begin(self, batch, logs=None):
        self.began = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.steps > 1:  # the first step traces the model
            self.spent += time.monotonic() - self.began
        if self.spent > self.seconds:
            self.model.stop_training = True


class Deadline(keras.callbacks.Callback):
    """Stop training at `time.monotonic()` `deadline` (after the batch under way): a trial
    that the time budget cannot see to its end is cut there, with its best epoch so far."""

    def __init__(self, deadline: float):
        super().__init__()
        self.deadline = deadline
        self.cut = False

    def on_train_batch_end(self, batch, logs=None):
        if time.monotonic() > self.deadline:
            self.cut = True
            self.model.stop_training = True


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
        oracle_file = self.oracle._get_oracle_fname()
        if not self._is_worker() and (
            os.path.exists(oracle_file) or os.path.exists(files.previous_copy(oracle_file))
        ):
            self._reload_oracle()
        else:
            super()._populate_initial_space()

    def _reload_oracle(self) -> None:
        """The oracle from its files; rebuilt from the trial files when oracle.json and its
        last good copy are both unreadable (the space comes from the hypermodel again)."""
        try:
            self.oracle.reload()
        except OracleStateLost:
            super()._populate_initial_space()
            self.oracle.rebuild()

    def save(self):
        """oracle.json and this tuner's own file (tuner0.json), atomically: keras-tuner writes
        the tuner's with a plain write, which a kill left empty, and the resume then died."""
        if not self._is_worker():
            self.oracle.save()
        write_state(self._get_tuner_fname(), self.get_state())

    def reload(self):
        """The oracle (see `_reload_oracle`) and this tuner's own state (empty: a file found
        empty or truncated is replaced, with a line saying so)."""
        if not self._is_worker():
            self._reload_oracle()
        try:
            state, note = files.read_json_recovering(self._get_tuner_fname(), repair=True)
        except (files.CorruptFile, OSError) as err:
            state, note = {}, f"{err}: rewritten (the tuner keeps no state of its own)"
            write_state(self._get_tuner_fname(), state)
        if note:
            print(note, flush=True)
        self.set_state(state)

    def run_trial(self, trial, *args, **kwargs):
        """Train as keras-tuner does (each execution from its own seed, see
        `ZooHyperModel`), then add `epochs_run`, `seconds`, `rss_mb`, `objective_std`, the
        spread of the executions' objectives (the oracle sees their mean), and `best_epoch`,
        the mean of the epochs their early stopping kept (what a replay trains for).

        A diverged trial records them too, with a NaN objective (the oracle wants one).
        """
        started = time.perf_counter()
        self.hypermodel.execution = 0
        run = self._run_isolated if self.isolate_trials else self._run_here
        deadline = getattr(self.oracle, "trial_deadline", lambda: None)()
        if deadline is not None:  # the time budget cuts a trial it cannot see to its end
            kwargs["callbacks"] = [*kwargs.get("callbacks", []), Deadline(deadline)]
        cap = trial.hyperparameters.values.get("tuner/seconds")
        if cap:  # a time-capped rung: each execution trains that long at most
            kwargs["callbacks"] = [*kwargs.get("callbacks", []), TimeCap(cap)]
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
            | {"cut": float(deadline is not None and time.monotonic() > deadline)}
        )

    def _run_here(self, trial, *args, **kwargs):
        """keras-tuner's `Tuner.run_trial` (with hyperband's round budget), its checkpoint of
        the best epoch written atomically (`AtomicSaveBestEpoch`)."""
        kwargs |= round_budget(trial.hyperparameters.values)
        saver = AtomicSaveBestEpoch(
            self.oracle.objective, self._get_checkpoint_fname(trial.trial_id)
        )
        original = kwargs.pop("callbacks", [])
        histories = []
        for execution in range(self.executions_per_trial):
            callbacks = self._deepcopy_callbacks(original)
            self._configure_tensorboard_dir(callbacks, trial, execution)
            callbacks += [tuner_utils.TunerCallback(self, trial), saver]
            histories.append(self._build_and_fit_model(trial, *args, **kwargs, callbacks=callbacks))
        return histories

    def _run_isolated(self, trial, *args, **kwargs):
        """`run_trial`'s training in a fresh process; a crash of that process is a crashed
        trial (retried `max_retries` times, then failed) with its reason as the message."""
        values = trial.hyperparameters.values
        earlier = values.get("tuner/trial_id")
        fit = {k: v for k, v in kwargs.items() if k != "callbacks"} | round_budget(values)
        job = {
            "hypermodel": self.hypermodel,
            "hp": trial.hyperparameters.get_config(),
            "objective": self.oracle.objective,
            "checkpoint": self._get_checkpoint_fname(trial.trial_id),
            "saver": AtomicSaveBestEpoch,
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
        """keras-tuner's, with the model's build_config.json written atomically."""
        try:
            hp = trial.hyperparameters
            model = self._try_build(hp)
            results = self.hypermodel.fit(hp, model, *args, **kwargs)
            build_config = self._get_build_config_fname(trial.trial_id)
            write_state(build_config, model.get_build_config())
            tuner_utils.validate_trial_results(results, self.oracle.objective, "HyperModel.fit()")
            return results
        finally:
            self.hypermodel.execution += 1

    def search(self, *fit_args, **fit_kwargs):
        """Search; in distributed mode the chief serves the oracle until the search is over."""
        if distributed.role() == "chief":
            self.oracle.verbose = fit_kwargs.get("verbose", 1)
            self.save()
            if self.oracle.all_done():  # a chief started again after its workers ended
                print("Every trial has finished: the chief serves no workers", flush=True)
                return
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
        # what writers killed in an earlier run of this trial left; no one writes there now
        files.remove_temporaries(self.get_trial_dir(trial.trial_id))


def round_budget(values: dict) -> dict:
    """A hyperband trial's `epochs` and `initial_epoch` (as kt.Hyperband.run_trial sets them);
    {} for other tuners."""
    if "tuner/epochs" not in values:
        return {}
    return {"epochs": values["tuner/epochs"], "initial_epoch": values["tuner/initial_epoch"]}


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
def halving(objective, max_trials, epochs, **common):
    """Asynchronous successive halving on a clock (`HalvingOracle`): many configurations for a
    ninth of `epochs`, the best third of them for a third, the best of those for all `epochs`;
    with `--time-budget`, no trial starts that the time left cannot hold."""
    return ZooTuner, HalvingOracle(
        objective=objective, max_trials=max_trials, max_epochs=epochs, **common
    )


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
    oracle.executions = executions_per_trial
    tuner = tuner_class(
        oracle,
        hypermodel,
        directory=directory,
        project_name=project_name,
        overwrite=overwrite,
        executions_per_trial=executions_per_trial,
    )
    if distributed.role() == "worker":  # its oracle is the chief's, over gRPC
        distributed.survive_chief_restarts(tuner.oracle)
    return tuner
