"""rnn-zoo: recurrent networks for Keras 3, registered by name, with tasks to train them on.

from zoo import create_model, list_models
model = create_model("bilstm", input_shape=(128, 9), num_outputs=6, units=64, depth=2)

Importing `zoo` is light: Keras (and TensorFlow) load on the first use of a name that needs them.
"""

import importlib

from zoo import backend

# name -> module that defines it; loaded on first access (PEP 562)
_EXPORTS = {
    "MODELS": "zoo.models",
    "create_model": "zoo.models",
    "list_models": "zoo.models",
    "looks_ahead": "zoo.models",
    "Registry": "zoo.registry",
    "UnknownNameError": "zoo.registry",
    "TASKS": "zoo.tasks",
    "DataError": "zoo.tasks",
    "Task": "zoo.tasks",
    "get_task": "zoo.tasks",
    "list_tasks": "zoo.tasks",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    if _EXPORTS[name] == "zoo.models":
        backend.load()
        importlib.import_module("zoo.layers")  # registers the zoo's layers for load_model
        importlib.import_module("zoo.scaling")
        importlib.import_module("zoo.smoothing")
        importlib.import_module("zoo.fused")
        importlib.import_module("zoo.scaling")
    module = importlib.import_module(_EXPORTS[name])
    return getattr(module, name)


def __dir__():
    return sorted([*globals(), *_EXPORTS])
