"""Streaming inference: a trained unidirectional model run one time step at a time.

`Streamer(model)` turns a functional zoo model into a step function over the model's own weights
(NumPy, batch 1) that carries its state from call to call, so a continuous signal is classified
as it arrives. After step t its output equals the full model's on the same steps, `model(x[:t+1])`
(the per-sample output, or the last step's output for the sequence kinds), to float32 rounding:

    streamer = Streamer(model)
    for x_t in signal:               # x_t: one time step, shape (features,)
        y_t = streamer.step(x_t)     # the model's output after this step
    streamer.reset()                 # a new recording starts from zero state

What streams, layer by layer: SimpleRNN, LSTM (and `FusedLSTM`), GRU (both `reset_after`), the
zoo's peephole LSTM, any stack of them with dropout and residual Adds; causal Conv1D (a buffer of
the last `dilation * (kernel_size - 1)` inputs); `AttentionPooling` as a running online softmax;
causal self-attention (`Attention(use_causal_mask=True)`, which keeps every past step);
global average and max pooling as running mean and max; Dense, Activation, merges; at the front
`Normalization`, `Rescaling` and a framing `Reshape` ((steps, F) to (steps / k, k * F)), which
emits an output every k input steps. Anything else, and any layer whose output at step t reads
later steps (Bidirectional, go_backwards, non-causal convolution or attention), is refused with
one line saying why (`StreamError`).

The command line, `python -m zoo.stream RUN_DIR --data FILE` (`zoo.stream`), streams a recording
(`load_recordings`) through a run's model and writes per-step predictions (CSV) and a plot.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from zoo.recordings import segments
from zoo.runs import load_model, locate_run
from zoo.tasks.har import CLASS_NAMES, STEPS, load_arrays


class StreamError(ValueError):
    """A model that cannot stream, or input a stream cannot take; the message is one line."""


# ---------------------------------------------------------------- step operations
#
# Each operation takes one step's vectors and returns one vector (or None while a framing
# buffer fills); `reset()` drops its state. All work in float32, as the models do.


def _f32(value) -> np.ndarray:
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import keras

    return np.asarray(keras.ops.convert_to_numpy(value), dtype=np.float32)


def _sigmoid(x):
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # no overflow warnings for large |x|


def _softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def _activation(fn, where: str):
    """The NumPy twin of a Keras activation function, or a StreamError naming it."""
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import keras

    table = {
        keras.activations.linear: lambda x: x,
        keras.activations.tanh: np.tanh,
        keras.activations.sigmoid: _sigmoid,
        keras.activations.relu: lambda x: np.maximum(x, 0),
        keras.activations.softmax: _softmax,
        keras.activations.hard_sigmoid: lambda x: np.clip(x / 6 + 0.5, 0, 1),
    }
    if fn is None:
        return table[keras.activations.linear]
    if fn not in table:
        raise StreamError(f"{where}: activation {getattr(fn, '__name__', fn)!r} is not supported")
    return table[fn]


class _Op:
    factor = 1  # input steps per output step

    def reset(self) -> None:
        pass


class _Function(_Op):
    """A stateless per-step operation."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *xs):
        return self.fn(*xs)


class Standardize(_Op):
    """(x - mean) / scale per feature: `keras.layers.Normalization`, or a run's statistics."""

    def __init__(self, mean, scale):
        self.mean = np.asarray(mean, np.float32).reshape(-1)
        self.scale = np.asarray(scale, np.float32).reshape(-1)
        self.features = len(self.mean)

    def __call__(self, x):
        return (x - self.mean) / self.scale


class Frame(_Op):
    """Joins `k` consecutive steps of `features` values into one step of k * features values."""

    def __init__(self, k: int, features: int):
        self.factor, self.features = k, features
        self.buffer = np.zeros((k, features), np.float32)
        self.filled = 0

    def reset(self):
        self.filled = 0

    def __call__(self, x):
        self.buffer[self.filled] = x
        self.filled += 1
        if self.filled < self.factor:
            return None
        self.filled = 0
        return self.buffer.reshape(-1).copy()


class _Recurrent(_Op):
    """One unidirectional recurrent layer: SimpleRNN, LSTM, GRU or the zoo's peephole LSTM."""

    def __init__(self, layer):
        # lazy: keeps Keras out of `import zoo` until the backend is chosen
        import keras

        from zoo.layers import PeepholeLSTMCell

        cell, where = layer.cell, f"layer {layer.name!r}"
        kinds = {
            keras.layers.SimpleRNNCell: "rnn",
            keras.layers.LSTMCell: "lstm",
            keras.layers.GRUCell: "gru",
            PeepholeLSTMCell: "peephole",
        }
        self.kind = kinds.get(type(cell))
        if self.kind is None:
            raise StreamError(f"{where}: recurrent cell {type(cell).__name__} is not supported")
        if layer.return_state:
            raise StreamError(f"{where}: return_state=True is not supported")
        self.units = cell.units
        self.kernel = _f32(cell.kernel)
        self.recurrent = _f32(cell.recurrent_kernel)
        use_bias = getattr(cell, "use_bias", True)
        self.bias = _f32(cell.bias) if use_bias else np.zeros(self.kernel.shape[1], np.float32)
        self.act = _activation(getattr(cell, "activation", keras.activations.tanh), where)
        self.rec_act = _activation(
            getattr(cell, "recurrent_activation", None) or keras.activations.sigmoid, where
        )
        if self.kind == "peephole":
            self.peephole = _f32(cell.peephole)
        if self.kind == "gru":
            self.reset_after = cell.reset_after
            if self.reset_after:  # separate input and recurrent biases
                bias = self.bias if use_bias else np.zeros((2, 3 * self.units), np.float32)
                self.bias, self.recurrent_bias = bias[0], bias[1]
        self.reset()

    def reset(self):
        self.h = np.zeros(self.units, np.float32)
        self.c = np.zeros(self.units, np.float32)

    def __call__(self, x):
        u = self.units
        if self.kind == "rnn":
            self.h = self.act(x @ self.kernel + self.bias + self.h @ self.recurrent)
        elif self.kind == "gru":
            xz = x @ self.kernel + self.bias
            if self.reset_after:
                hz = self.h @ self.recurrent + self.recurrent_bias
                z = self.rec_act(xz[:u] + hz[:u])
                r = self.rec_act(xz[u : 2 * u] + hz[u : 2 * u])
                hh = self.act(xz[2 * u :] + r * hz[2 * u :])
            else:
                hz = self.h @ self.recurrent[:, : 2 * u]
                z = self.rec_act(xz[:u] + hz[:u])
                r = self.rec_act(xz[u : 2 * u] + hz[u:])
                hh = self.act(xz[2 * u :] + (r * self.h) @ self.recurrent[:, 2 * u :])
            self.h = z * self.h + (1 - z) * hh
        else:
            zs = x @ self.kernel + self.h @ self.recurrent + self.bias
            zi, zf, zc, zo = zs[:u], zs[u : 2 * u], zs[2 * u : 3 * u], zs[3 * u :]
            if self.kind == "peephole":
                zi = zi + self.peephole[0] * self.c
                zf = zf + self.peephole[1] * self.c
            self.c = self.rec_act(zf) * self.c + self.rec_act(zi) * self.act(zc)
            if self.kind == "peephole":
                zo = zo + self.peephole[2] * self.c
            self.h = self.rec_act(zo) * self.act(self.c)
        return self.h


class _CausalConv(_Op):
    """Conv1D with padding="causal": a buffer of the last (k - 1) * dilation + 1 inputs."""

    def __init__(self, layer):
        where = f"layer {layer.name!r}"
        if layer.padding != "causal":
            raise StreamError(
                f"{where}: Conv1D with padding={layer.padding!r} reads later steps; "
                "only padding='causal' streams"
            )
        if tuple(layer.strides) != (1,) or layer.groups != 1:
            raise StreamError(f"{where}: Conv1D with strides or groups other than 1")
        self.kernel = _f32(layer.kernel)  # (k, in, filters)
        self.bias = _f32(layer.bias) if layer.use_bias else 0.0
        self.dilation = layer.dilation_rate[0]
        self.act = _activation(layer.activation, where)
        self.span = (self.kernel.shape[0] - 1) * self.dilation + 1
        self.reset()

    def reset(self):
        self.buffer = np.zeros((self.span, self.kernel.shape[1]), np.float32)

    def __call__(self, x):
        self.buffer[:-1] = self.buffer[1:]
        self.buffer[-1] = x
        taps = self.buffer[:: self.dilation]
        return self.act(np.tensordot(taps, self.kernel, axes=([0, 1], [0, 1])) + self.bias)


class _AttentionPooling(_Op):
    """The zoo's `AttentionPooling` as a running (online) softmax over the steps seen so far."""

    def __init__(self, layer):
        self.w = _f32(layer.score_hidden.kernel)
        self.b = _f32(layer.score_hidden.bias)
        self.v = _f32(layer.score.kernel)[:, 0]
        self.reset()

    def reset(self):
        self.top, self.total, self.sum = -np.inf, np.float32(0), 0.0

    def __call__(self, h):
        score = np.float32(np.tanh(h @ self.w + self.b) @ self.v)
        top = max(self.top, score)
        old, new = np.exp(self.top - top), np.exp(score - top)
        self.total = self.total * old + new
        self.sum = self.sum * old + new * h
        self.top = top
        return self.sum / self.total


class _CausalAttention(_Op):
    """`keras.layers.Attention(use_causal_mask=True)`: the query of step t over keys 0..t.

    Exact, but it keeps every step's key and value: memory and time grow with the stream."""

    def __init__(self, layer, where):
        if layer.score_mode not in ("dot", "concat"):
            raise StreamError(f"{where}: score_mode={layer.score_mode!r} is not supported")
        self.mode = layer.score_mode
        self.scale = None if layer.scale is None else _f32(layer.scale)
        if self.mode == "concat":
            self.weight = _f32(layer.concat_score_weight)
        self.reset()

    def reset(self):
        self.keys, self.values = [], []

    def __call__(self, q, v, k=None):
        self.keys.append(v if k is None else k)
        self.values.append(v)
        keys, values = np.stack(self.keys), np.stack(self.values)
        if self.mode == "dot":
            scores = keys @ q
            if self.scale is not None:
                scores = scores * self.scale
        else:
            inner = q + keys if self.scale is None else self.scale * (q + keys)
            scores = self.weight * np.tanh(inner).sum(axis=-1)
        return _softmax(scores) @ values


class _RunningPool(_Op):
    """GlobalAveragePooling1D / GlobalMaxPooling1D as a running mean / max."""

    def __init__(self, mean: bool):
        self.mean = mean
        self.reset()

    def reset(self):
        self.n, self.acc = 0, None

    def __call__(self, x):
        self.n += 1
        if self.acc is None:
            self.acc = x.copy()
        elif self.mean:
            self.acc = self.acc + x
        else:
            self.acc = np.maximum(self.acc, x)
        return self.acc / np.float32(self.n) if self.mean else self.acc


# ---------------------------------------------------------------- from layers to operations

_IDENTITY = (
    "Dropout",
    "SpatialDropout1D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ActivityRegularization",
    "Identity",
)
_MERGES = {
    "Add": lambda *xs: sum(xs[1:], xs[0]),
    "Subtract": lambda a, b: a - b,
    "Multiply": lambda *xs: np.prod(xs, axis=0),
    "Average": lambda *xs: np.mean(xs, axis=0),
    "Maximum": lambda *xs: np.max(xs, axis=0),
    "Minimum": lambda *xs: np.min(xs, axis=0),
    "Concatenate": lambda *xs: np.concatenate(xs),
}


def _dense(layer):
    kernel, act = _f32(layer.kernel), _activation(layer.activation, f"layer {layer.name!r}")
    bias = _f32(layer.bias) if layer.use_bias else 0.0
    return _Function(lambda x: act(x @ kernel + bias))


def _normalization(layer, features: int):
    if layer.mean is None:
        raise StreamError(f"layer {layer.name!r}: Normalization is not adapted (no mean)")
    mean, variance = _f32(layer.mean).reshape(-1), _f32(layer.variance).reshape(-1)
    if len(mean) not in (1, features):
        raise StreamError(f"layer {layer.name!r}: Normalization over other axes than features")
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import keras

    scale = np.maximum(np.sqrt(variance), keras.backend.epsilon())
    if layer.invert:
        return _Function(lambda x: mean + x * scale)
    return Standardize(np.broadcast_to(mean, features), np.broadcast_to(scale, features))


def _reshape(layer, in_shape):
    target = tuple(layer.target_shape)
    features = in_shape[-1]
    if (
        len(in_shape) == 3
        and len(target) == 2
        and target[1] % features == 0
        and (
            target[0] in (-1, None)
            or in_shape[1] is None
            or target[0] * target[1] == in_shape[1] * features
        )
    ):
        return Frame(target[1] // features, features)
    raise StreamError(
        f"layer {layer.name!r}: Reshape {tuple(in_shape[1:])} -> {target} is not a framing of "
        "steps ((steps, F) -> (steps / k, k * F))"
    )


def _make_op(layer, node, model_name: str):
    """The step operation of one layer call, or a StreamError saying why it cannot stream."""
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import keras

    from zoo.layers import AttentionPooling

    kind, where = type(layer).__name__, f"layer {layer.name!r}"
    in_shape = tuple(node.input_tensors[0].shape)
    if isinstance(layer, keras.layers.Bidirectional):
        raise StreamError(
            f"model {model_name!r} cannot stream: {where} (Bidirectional) reads the sequence "
            "backwards, so its output at a step depends on later steps"
        )
    if isinstance(layer, keras.Model):
        return _Graph(layer)
    if isinstance(layer, keras.layers.RNN):
        if layer.go_backwards:
            raise StreamError(
                f"model {model_name!r} cannot stream: {where} reads the sequence backwards "
                "(go_backwards=True)"
            )
        return _Recurrent(layer)
    if isinstance(layer, keras.layers.Conv1D) and kind == "Conv1D":
        return _CausalConv(layer)
    if isinstance(layer, AttentionPooling):
        return _AttentionPooling(layer)
    if isinstance(layer, keras.layers.Attention):
        kwargs = node.arguments.kwargs
        if not kwargs.get("use_causal_mask") or kwargs.get("return_attention_scores"):
            raise StreamError(
                f"model {model_name!r} cannot stream: {where} (Attention) without "
                "use_causal_mask=True lets each step attend to later steps"
            )
        return _CausalAttention(layer, where)
    if isinstance(layer, keras.layers.Dense) and kind == "Dense":
        return _dense(layer)
    if kind == "Activation":
        return _Function(_activation(layer.activation, where))
    if kind in _IDENTITY:
        return _Function(lambda x: x)
    if kind in _MERGES:
        if len({len(t.shape) for t in node.input_tensors}) > 1:
            raise StreamError(
                f"model {model_name!r} cannot stream: {where} ({kind}) joins a sequence with a "
                "per-sample tensor, so every step would see the last step's output"
            )
        if kind == "Concatenate" and layer.axis not in (-1, len(in_shape) - 1):
            raise StreamError(f"{where}: Concatenate along axis {layer.axis}, not the features")
        return _Function(_MERGES[kind])
    if kind in ("GlobalAveragePooling1D", "GlobalMaxPooling1D"):
        if layer.data_format != "channels_last":
            raise StreamError(f"{where}: {kind} with data_format={layer.data_format!r}")
        return _RunningPool(mean=kind == "GlobalAveragePooling1D")
    if kind == "Normalization":
        return _normalization(layer, in_shape[-1])
    if kind == "Rescaling":
        scale, offset = np.float32(layer.scale), np.float32(layer.offset)
        return _Function(lambda x: x * scale + offset)
    if kind == "Reshape":
        return _reshape(layer, in_shape)
    raise StreamError(
        f"model {model_name!r} cannot stream: {where} ({kind}) has no step-by-step form in "
        "zoo.stream"
    )


class _Graph(_Op):
    """A functional model as a list of step operations in the order Keras runs its nodes."""

    def __init__(self, model):
        # lazy: keeps Keras out of `import zoo` until the backend is chosen
        import keras

        model = getattr(model, "_functional", model)  # a built Sequential's functional twin
        name = model.name
        if not isinstance(model, keras.Model) or not hasattr(model, "_nodes_by_depth"):
            raise StreamError(f"model {name!r} cannot stream: only functional models do")
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise StreamError(f"model {name!r} cannot stream: it needs one input and one output")
        shape = tuple(model.inputs[0].shape)
        if len(shape) != 3:
            raise StreamError(
                f"model {name!r} cannot stream: its input {shape} is not (batch, steps, features)"
            )
        self.features, self.num_outputs = shape[-1], model.outputs[0].shape[-1]
        self.input_id, self.output_id = id(model.inputs[0]), id(model.outputs[0])
        rates = {self.input_id: 1}
        self.plan = []
        # Keras' own order (keras/src/ops/function.py, _run_through_graph): deepest nodes first
        for depth in sorted(model._nodes_by_depth, reverse=True):
            for node in model._nodes_by_depth[depth]:
                if node.is_input or not node.operation:
                    continue
                ins = [id(t) for t in node.input_tensors]
                if len(node.outputs) != 1:
                    raise StreamError(
                        f"model {name!r} cannot stream: layer {node.operation.name!r} has "
                        f"{len(node.outputs)} outputs"
                    )
                op = _make_op(node.operation, node, name)
                seen = {rates[i] for i in ins}
                if len(seen) != 1:
                    raise StreamError(
                        f"model {name!r} cannot stream: layer {node.operation.name!r} joins "
                        "inputs framed at different rates"
                    )
                rates[id(node.outputs[0])] = seen.pop() * op.factor
                self.plan.append((op, ins, id(node.outputs[0])))
        self.factor = rates[self.output_id]

    def reset(self):
        for op, _, _ in self.plan:
            op.reset()

    def __call__(self, x):
        values = {self.input_id: x}
        for op, ins, out in self.plan:
            args = [values[i] for i in ins]
            values[out] = None if any(a is None for a in args) else op(*args)
        return values[self.output_id]


# ---------------------------------------------------------------- the streamer


def run_preprocessing(config: dict) -> list[_Op]:
    """The preprocessing a run's task applies to raw input outside the model, as step operations.

    Standardise each raw step with the task's mean and std (config.json's task info), then join
    `frame_steps` raw steps into one model step (HAR's framing). Drop this function once models
    carry their preprocessing as Keras layers (`Normalization`, `Reshape`): `Streamer` reads
    those layers itself, and a run whose model does so needs no preprocessing here.
    """
    info = config.get("task", {}).get("info", {})
    if info.get("preprocessing") == "model":  # the model's own layers do it
        return []
    if info.get("per_subject"):
        raise StreamError(
            "the run standardises each subject by that subject's own statistics "
            "(per_subject=True); a stream has none before the recording ends"
        )
    ops: list[_Op] = []
    if info.get("standardized", True) and "mean" in info:
        std = np.asarray(info["std"], np.float64)
        ops.append(Standardize(info["mean"], np.where(std == 0, 1.0, std)))
    frame = int(info.get("frame_steps", 1))
    if frame > 1:
        features = len(info["mean"]) if "mean" in info else len(info.get("channels", ()))
        if not features:
            raise StreamError("the run frames steps but its config.json has no channel count")
        ops.append(Frame(frame, features))
    return ops


class Streamer:
    """A model run one step at a time with its state carried, batch 1, on the model's weights.

    Args:
        model: a functional Keras model whose outputs never read later inputs.
        preprocess: step operations applied to each raw step first (see `run_preprocessing`).
            Defaults to none: the stream takes the model's own input.

    Raises:
        StreamError: for a model that cannot stream, with one line saying why.
    """

    def __init__(self, model, preprocess: Sequence[_Op] = ()):
        self.graph = _Graph(model)
        self.preprocess = list(preprocess)
        factor, features = 1, self.graph.features
        for op in reversed(self.preprocess):
            if op.features * op.factor != features:
                raise StreamError(
                    f"the preprocessing gives {op.features * op.factor} values a step but "
                    f"model {model.name!r} takes {features}"
                )
            features //= op.factor
            factor *= op.factor
        self.features = features  # values in one input step
        self.steps_per_output = factor * self.graph.factor  # input steps per output
        self.num_outputs = self.graph.num_outputs
        self.steps = 0  # input steps since the last reset

    @classmethod
    def from_run(cls, run: str | os.PathLike) -> Streamer:
        """The streamer of a `zoo.train` run folder: its model with its task's preprocessing."""
        model_path, config = locate_run(run)
        return cls(load_model(model_path), run_preprocessing(config))

    def reset(self) -> None:
        """Forget every step seen: the next step starts a new sequence from zero state."""
        for op in self.preprocess:
            op.reset()
        self.graph.reset()
        self.steps = 0

    def step(self, x) -> np.ndarray | None:
        """Take one input step (`features` values); return the model's output after it, or None
        while a frame of `steps_per_output` steps is still filling."""
        x = np.asarray(x, dtype=np.float32)
        if x.shape != (self.features,):
            raise StreamError(
                f"a stream step takes {self.features} values (one time step); "
                f"received shape {x.shape}"
            )
        self.steps += 1
        for op in self.preprocess:
            x = op(x)
            if x is None:
                return None
        return self.graph(x)

    def feed(self, chunk) -> np.ndarray:
        """Take `(steps, features)` input steps; return the outputs they produced, one row per
        output (one a step, or one a frame), shape `(outputs, num_outputs)`."""
        chunk = np.asarray(chunk, dtype=np.float32)
        if chunk.ndim != 2 or chunk.shape[1] != self.features:
            raise StreamError(
                f"a stream chunk is (steps, {self.features}); received shape {chunk.shape}"
            )
        outputs = [y for y in map(self.step, chunk) if y is not None]
        return np.array(outputs, np.float32).reshape(len(outputs), self.num_outputs)


def play(streamer: Streamer, signal, reset_every: int | None = None):
    """Stream `signal` (steps, features) from a reset, one step a call, timing each call.

    `reset_every` N resets the stream before steps N, 2N, ... (None: state carried throughout).
    Returns `(steps, outputs, seconds)`: the index of the input step after which each output came,
    the outputs `(outputs, num_outputs)`, and the wall time of every `step` call.
    """
    signal = np.asarray(signal, dtype=np.float32)
    if signal.ndim != 2 or signal.shape[1] != streamer.features:
        raise StreamError(
            f"a recording is (steps, {streamer.features}); received shape {signal.shape}"
        )
    streamer.reset()
    steps, outputs, seconds = [], [], np.empty(len(signal))
    clock = time.perf_counter
    for t, x in enumerate(signal):
        if reset_every and t and t % reset_every == 0:
            streamer.reset()
        start = clock()
        y = streamer.step(x)
        seconds[t] = clock() - start
        if y is not None:
            steps.append(t)
            outputs.append(y)
    outputs = np.array(outputs, np.float32).reshape(len(outputs), streamer.num_outputs)
    return np.array(steps, dtype=np.int64), outputs, seconds


# ---------------------------------------------------------------- recordings


def har_recordings(data, subject: int | None = None):
    """A har run's test subject (default: the first) as its continuous recordings (see
    `zoo.recordings`): `(recordings, class names, what)`, each recording `(signal, labels)`."""
    arrays, _ = load_arrays(data)
    s_test = arrays["s_test"]
    subject = int(subject or s_test[0])
    if subject not in s_test:
        raise StreamError(f"--subject {subject}: test subjects are {sorted(set(s_test.tolist()))}")
    rows = s_test == subject
    found = segments(arrays["x_test"][rows], arrays["y_test"][rows], s_test[rows], STEPS // 2)
    return [(seg.signal, seg.labels) for seg in found], CLASS_NAMES, f"subject {subject}"


def npz_recording(path: Path):
    """An .npz recording: `(signal, labels or None)`, the array 'x' (or the only array) and
    the optional per-step labels 'y'."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as err:
        raise StreamError(f"cannot read {path} as .npz ({err})".splitlines()[0]) from None
    x = arrays.get("x", next(iter(arrays.values())) if len(arrays) == 1 else None)
    if x is None:
        raise StreamError(f"{path} holds {', '.join(arrays)}; name the recording 'x'")
    y = arrays.get("y")
    if y is not None and y.shape != x.shape[:1]:
        raise StreamError(f"{path}: 'y' must hold one label a step, shape {x.shape[:1]}")
    return x, y


def load_recordings(data, config: dict, subject: int | None = None):
    """The recordings of `data` for a run (its config.json): an .npz recording, or for a har
    run the UCI HAR zip or folder, whose test subject's windows are joined back into continuous
    segments. Returns `(recordings, class names or None, what)`, each recording
    `(signal, labels or None)`; a StreamError for data a stream cannot take."""
    data = Path(data)
    if not data.exists():
        raise StreamError(f"--data {data} does not exist")
    if data.suffix == ".npz":
        return [npz_recording(data)], config["task"].get("class_names"), data.name
    if config["hyperparameters"]["task"] == "har":
        return har_recordings(data, subject)
    raise StreamError(
        f"--data {data}: a {config['hyperparameters']['task']} run streams an .npz recording"
    )
