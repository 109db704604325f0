"""Tasks: what a model is trained on, registered by name.

`get_task("har")` returns a `Task` (see `zoo.tasks.base`); importing this package registers
every task module.
"""

from zoo.tasks import files, har, series, synthetic  # noqa: F401  (registers the tasks)
from zoo.tasks.base import (
    TASKS,
    DataError,
    Task,
    get_task,
    list_tasks,
    pad_ragged,
    task_options,
    task_reads_data,
)

__all__ = [
    "TASKS",
    "DataError",
    "Task",
    "get_task",
    "list_tasks",
    "pad_ragged",
    "task_options",
    "task_reads_data",
]
