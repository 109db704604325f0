"""rnn-zoo: recurrent networks for Keras 3, registered by name, with tasks to train them on.

    from zoo import create_model, list_models
    model = create_model("bilstm", input_shape=(128, 9), num_outputs=6, units=64, depth=2)
"""

from zoo.models import MODELS, create_model, list_models, looks_ahead
from zoo.registry import Registry, UnknownNameError
from zoo.tasks import TASKS, DataError, Task, get_task, list_tasks

__all__ = [
    "MODELS", "TASKS", "DataError", "Registry", "Task", "UnknownNameError",
    "create_model", "get_task", "list_models", "list_tasks", "looks_ahead",
]  # fmt: skip
__version__ = "0.1.0"
