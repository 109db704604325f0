"""A trial in its own process (`--isolate-trials`): what the spawned process runs.

TensorFlow keeps memory from every model a process has built, so a long search in one process
grows trial after trial; a trial in a fresh process gives it all back when it ends. This module
imports nothing heavy at the top: the process starts with `start` (TensorFlow imported quietly,
and a death signal tied to the search's process), then runs `train_trial`.
"""

from __future__ import annotations

import copy
import ctypes
import json
import os
import signal

from zoo import backend, files


def start(search_pid: int) -> None:
    """The trial process's first step: it ends when the search's process (`search_pid`) does
    (Linux), so a killed search leaves no orphan training on; TensorFlow's start-up lines are
    held back."""
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        pass
    if os.getppid() != search_pid:  # the search died before the line above
        os._exit(1)
    backend.load()


def train_trial(job: dict) -> list[dict]:
    """A trial's executions, trained as `ZooTuner.run_trial` trains them in the search's
    process; the best epoch's weights go to the trial's checkpoint. Returns each execution's
    history (a dict)."""
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import keras_tuner as kt

    hypermodel, hp = job["hypermodel"], kt.HyperParameters.from_config(job["hp"])
    saver = job["saver"](job["objective"], job["checkpoint"])  # written atomically
    histories = []
    for execution in range(job["executions"]):
        hypermodel.execution = execution
        model = hypermodel.build(hp)
        if job["warm_start"]:  # hyperband: go on from an earlier round's trial
            model.load_weights(job["warm_start"])
        callbacks = [*copy.deepcopy(job["callbacks"]), saver]
        history = hypermodel.fit(hp, model, callbacks=callbacks, **job["fit"])
        files.write_text(job["build_config"], json.dumps(model.get_build_config()))
        histories.append(history.history)
    return histories
