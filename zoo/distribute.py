"""Training past one device: `--distribute mirrored` (all local devices) or `multi_worker`.

mirrored is TensorFlow's `MirroredStrategy`, or `keras.distribution.DataParallel` on JAX;
multi_worker is TensorFlow's `MultiWorkerMirroredStrategy`, its cluster read from TF_CONFIG.
The batch size is the global batch, split between replicas (on JAX evenly: it must divide, and
the training and validation splits are padded with weight-0 rows, `pad_to_replicas`). The chief (task 0) writes the run
folder; every other worker writes its files to a temporary folder it removes at the end.
RNN_ZOO_CPU_DEVICES=N splits the CPU into N logical devices, to try mirrored on one machine.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re

import numpy as np

from zoo import backend
from zoo.config import RunConfig

CHOICES = ("none", "mirrored", "multi_worker")
CPU_DEVICES = "RNN_ZOO_CPU_DEVICES"


def cluster() -> dict:
    """TF_CONFIG, checked: {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker",
    "index": i}} (a "chief" entry and task type are taken too). A bad one is a one-line
    ValueError."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise ValueError(
            "--distribute multi_worker reads the cluster from TF_CONFIG, which is not set; e.g. "
            'TF_CONFIG=\'{"cluster": {"worker": ["host1:port", "host2:port"]}, '
            '"task": {"type": "worker", "index": 0}}\''
        )
    try:
        config = json.loads(text)
        jobs, task = config["cluster"], config["task"]
        hosts = jobs[task["type"]]
        if not isinstance(task["index"], int) or not 0 <= task["index"] < len(hosts):
            raise IndexError(f"task index {task['index']!r} not in 0..{len(hosts) - 1}")
        if not all(isinstance(h, str) and h.rpartition(":")[2].isdigit() for h in hosts):
            raise ValueError(f"addresses must be 'host:port', got {hosts}")
    except (json.JSONDecodeError, KeyError, TypeError, IndexError, ValueError) as err:
        raise ValueError(f"TF_CONFIG is not a valid cluster description ({err})") from None
    return config


def is_chief(choice: str) -> bool:
    """True unless this process is a multi_worker worker other than the chief (task 0 of the
    "chief" job, else of the "worker" job)."""
    if choice != "multi_worker":
        return True
    config = cluster()
    chief = "chief" if "chief" in config["cluster"] else "worker"
    return config["task"]["type"] == chief and config["task"]["index"] == 0


def check(config: RunConfig, stateful: bool) -> None:
    """Refuse, in one line, a --distribute that cannot work with this configuration."""
    choice = config.distribute
    if choice == "none":
        return
    name = backend.name()
    if name not in ("tensorflow", "jax"):
        raise ValueError(f"--distribute {choice} runs on TensorFlow or JAX, not {name}")
    if choice == "multi_worker" and name != "tensorflow":
        raise ValueError("--distribute multi_worker runs on TensorFlow only (TF_CONFIG)")
    if choice == "multi_worker":
        cluster()
    if stateful:
        raise ValueError(
            f"--distribute {choice} splits each batch between replicas, which breaks a stateful "
            "task's streams; drop it or the task option stateful"
        )
    if config.ensemble > 1:
        raise ValueError(f"--distribute {choice} trains one model; drop --ensemble")
    if name == "tensorflow" and config.jit_compile == "on":
        raise ValueError(
            f"--jit-compile on fails under --distribute {choice} (XLA cannot reach the other "
            "replicas' variables); drop it"
        )
    replicas = len(local_devices()) if choice == "mirrored" else 1
    if name == "jax" and config.batch_size and config.batch_size % replicas:
        raise ValueError(
            f"--distribute {choice} on JAX splits each batch evenly over {replicas} devices; "
            f"give a --batch-size divisible by {replicas}. Received: {config.batch_size}"
        )
    if choice == "mirrored" and len(local_devices()) < 2:
        raise ValueError(
            f"--distribute mirrored needs 2 or more devices and found 1 ({local_devices()[0]}); "
            f"on one CPU, set {CPU_DEVICES}=2 (TensorFlow) or "
            "XLA_FLAGS=--xla_force_host_platform_device_count=2 (JAX) to try it"
        )


def pad_to_replicas(data: tuple, replicas: int) -> tuple:
    """`data` ((x, y) or (x, y, w)) as (x, y, w) padded to a multiple of `replicas` rows with
    weight-0 copies of its first rows, so that JAX splits every batch, the last one too, evenly
    over the devices (with a batch size they divide). The weights keep the padding out of the
    metrics (weighted: see `zoo.fit.compile_model`); a loss averaged over a batch counts the
    padded rows, fewer than `replicas` in the whole split, as zero."""
    x, y, w = (*data, None)[:3]
    pad = -len(x) % replicas
    if w is None:
        w = np.ones(len(x), "float32")
    if not pad:
        return x, y, w
    rows = np.arange(pad) % len(x)
    zero = np.zeros_like(w[rows])
    return tuple(np.concatenate([a, b]) for a, b in ((x, x[rows]), (y, y[rows]), (w, zero)))


def local_devices() -> list[str]:
    """The devices mirrored replicates over: the GPUs, else the (logical) CPUs."""
    if backend.name() == "jax":
        # lazy: keeps Keras out of `import zoo` until the backend is chosen
        import keras

        return keras.distribution.list_devices()
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import tensorflow as tf

    split_cpu()
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return [d.name for d in devices]


@functools.cache
def split_cpu() -> None:
    """Split the CPU into RNN_ZOO_CPU_DEVICES logical devices (before TensorFlow starts)."""
    count = os.environ.get(CPU_DEVICES)
    if not count:
        return
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"{CPU_DEVICES} must be a positive integer. Received: {count!r}")
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * int(count)
    )


@functools.cache
def strategy(choice: str):
    """The process' one strategy (TensorFlow creates it once) or JAX distribution."""
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import keras

    if backend.name() == "jax":
        return keras.distribution.DataParallel(devices=local_devices())
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import tensorflow as tf

    if choice == "mirrored":
        return tf.distribute.MirroredStrategy(local_devices())
    _patch_keras_multi_worker()
    return tf.distribute.MultiWorkerMirroredStrategy()


def scope(choice: str):
    """The context to build, compile and fit a model in: the strategy's scope, or nothing."""
    return contextlib.nullcontext() if choice == "none" else strategy(choice).scope()


def jit_compile(choice: str, jit: str) -> str:
    """The --jit-compile to use: under a TensorFlow strategy XLA fails (see `check`), so auto
    means off there."""
    return "off" if choice != "none" and backend.name() == "tensorflow" else jit


def _patch_keras_multi_worker() -> None:
    """Make Keras 3.15's `fit` work under MultiWorkerMirroredStrategy (keras-team/keras#20585).

    Keras reduces the first (x, y) batch across workers before building the model, which the
    strategy cannot do with a tuple, and reduces each step's scalar logs with `axis=0`. The
    build needs only this worker's batch, and the logs their mean over workers.
    """
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer, "_zoo_patched", False):
        return
    keras_reduce = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction == "auto" and trainer._collective_all_reduce_multi_worker(strategy):
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return keras_reduce(values, strategy, reduction)

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        local = self.distribute_strategy.experimental_local_results
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(lambda v: local(v)[0], next(batches))
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    trainer.reduce_per_replica = reduce_per_replica
    trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    trainer._zoo_patched = True


def lost_worker(err: BaseException) -> bool:
    """True for the error a collective raises when another worker died or stopped answering."""
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import tensorflow as tf

    return isinstance(err, (tf.errors.UnavailableError, tf.errors.DeadlineExceededError))


def lost_tasks(err: BaseException) -> str:
    """The tasks the health check names as lost, e.g. "lost /job:worker/replica:0/task:1"."""
    _, said, unhealthy = getattr(err, "message", "").partition("tasks are unhealthy")
    tasks = sorted(set(re.findall(r"/job:\w+/replica:\d+/task:\d+", unhealthy)))
    return f"lost {', '.join(tasks)}" if tasks else type(err).__name__
