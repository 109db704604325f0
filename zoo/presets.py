"""Named configurations measured to work: `python -m zoo.train --preset NAME`.

A preset is a dictionary of `zoo.train` settings (task, model, model and training
hyperparameters). The preset named `<task>_<model>` is also the default of
`python -m zoo.train TASK MODEL`: it sits under `--hparams` and the flags, so anything given
explicitly wins, and `--preset none` trains with the model's and the task's bare defaults.
Each preset's docstring gives what it was chosen for; the figures it reaches are in the README's
results table, measured with `scripts/benchmark_results.py`.
"""

from __future__ import annotations

from zoo.registry import Registry

PRESETS = Registry("preset")
NO_PRESET = "none"


def list_presets(pattern: str | None = None) -> list[str]:
    """Sorted preset names, filtered by fnmatch globs."""
    return PRESETS.list(pattern)


def get_preset(name: str) -> dict:
    """The settings of preset `name` (a fresh dict); raises `UnknownNameError` otherwise."""
    return dict(PRESETS.get(name)())


def default_preset(task: str, model: str) -> str | None:
    """The preset `python -m zoo.train TASK MODEL` starts from, if there is one."""
    name = f"{task}_{model}"
    return name if name in PRESETS else None


@PRESETS.register
def har_lstm() -> dict:
    """LSTM on UCI HAR: dropout and recurrent dropout 0.3, frames of 4 steps (32 x 36 inputs)."""
    return _har_recipe("lstm")


@PRESETS.register
def har_lstm_ensemble() -> dict:
    """A seed ensemble of 3 har_lstm models, outputs averaged (3 times the training time)."""
    return {**har_lstm(), "ensemble": 3}


@PRESETS.register
def har_lstm_per_subject() -> dict:
    """har_lstm on windows standardised per subject (transductive: see har's per_subject)."""
    preset = har_lstm()
    return {**preset, "task_options": {**preset["task_options"], "per_subject": True}}


@PRESETS.register
def har_lstm_unframed() -> dict:
    """LSTM on UCI HAR: dropout and recurrent dropout 0.3 on all 128 steps (slower epochs)."""
    return _har_recipe("lstm", frame_steps=1)


@PRESETS.register
def har_window_features() -> dict:
    """UCI HAR by a softmax on each window's 497 features, computed in the model (no RNN).

    `har_lstm` with depth 0 and `window_features`. Beats har_gru on
    validation (93.95% mean of 3 seeds against 93.39%); not a recurrent network."""
    preset = har_lstm()
    options = {**preset["task_options"], "window_features": True}
    return {**preset, "depth": 0, "task_options": options}


@PRESETS.register
def har_mlstm_fcn() -> dict:
    """MLSTM-FCN on UCI HAR with each window's 497 features joined to its two branches.

    The default of `python -m zoo.train har mlstm_fcn`: the zoo's best HAR model on validation
    (93.97% mean of 3 seeds against har_window_features' 93.95%, har_gru's 93.39% and
    mlstm_fcn's 93.05% without the features)."""
    return {"task": "har", "model": "mlstm_fcn", "task_options": {"window_features": True}}


def _har_recipe(model: str, frame_steps: int = 4) -> dict:
    """har_lstm's settings for another recurrent model of the zoo."""
    options = {"task_options": {"frame_steps": frame_steps}} if frame_steps > 1 else {}
    return {"task": "har", "model": model, "dropout": 0.3, "recurrent_dropout": 0.3, **options}


@PRESETS.register
def har_rnn() -> dict:
    """Vanilla RNN on UCI HAR with har_lstm's settings (frames of 4, dropouts 0.3)."""
    return _har_recipe("rnn")


@PRESETS.register
def har_gru() -> dict:
    """GRU on UCI HAR as a 40-trial bayesian search chose it on validation (frames of 4)."""
    return {
        "task": "har",
        "model": "gru",
        "units": 96,
        "dropout": 0.1,
        "recurrent_dropout": 0.3,
        "l2": 1e-5,
        "optimizer": "rmsprop",
        "learning_rate": 0.001544502838339863,
        "batch_size": 64,
        "epochs": 40,
        "patience": 8,
        "task_options": {"frame_steps": 4},
    }


@PRESETS.register
def echo_lstm_stateful() -> dict:
    """LSTM on echo with truncated BPTT (stateful streams), up to 40 epochs: every step counts."""
    return {"task": "echo", "model": "lstm", "task_options": {"stateful": True}, "epochs": 40}
