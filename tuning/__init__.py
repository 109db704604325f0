"""Hyperparameter search over the zoo's models with keras-tuner.

- `tuning.hypermodel`: `ZooHyperModel`, the search space over the model registry for any task.
- `tuning.tuners`: random, bayesian, hyperband and grid tuners with per-trial bookkeeping and an
  oracle that survives dead workers.
- `tuning.isolate`: a trial in its own process (`--isolate-trials`), so memory stays flat.
- `tuning.distributed`: chief and worker roles, the chief's serving loop, the worker heartbeat.
- `tuning.search`: `python -m tuning.search TASK`, the command line.
- `tuning.report`: `python -m tuning.report DIR`, trials.csv and plots from a project folder.
"""
