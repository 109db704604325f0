"""What every model family shares: the registry, `variant()`, the checks, the preprocessing
layers in front of a model and the output head behind it.

A family is one builder function marked with `@family(...)` (which of its arguments a variant
may fix, which hyperparameters every variant takes, whether a structure looks ahead, which
output kinds it gives); a variant is one `variant(builder, name, doc, **settings)` line. Keras is
imported when a model is built, so listing the zoo is instant.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from zoo.registry import Registry

MODELS = Registry("model")

OUTPUT_KINDS = ("classification", "sequence_classification", "regression", "sequence_regression")
# Arguments every builder takes that come from the task, not from a choice of hyperparameters.
NOT_TUNED = ("output_kind", "preprocessing", "stateful_batch", "name")


@dataclass(frozen=True)
class Family:
    """What a family builder declares about its variants.

    Args:
        structure: arguments a variant may fix (`cell`, `bidirectional`, ...); all others are
            hyperparameters.
        common: the hyperparameters every variant takes; a variant may expose more.
        looks_ahead: a variant's fixed settings -> why its output at a step reads later
            inputs (one phrase), or None when it does not.
        output_kinds: the output kinds its models give; the first is a variant's default.
        scales_itself: its models take a forecasting task's raw windows and do their own
            scaling (`create_model` puts no `zoo.scaling` layers around them).
        loss: what its models train on in place of the task's loss (a phrase), or None: the
            task's. Their validation losses are on another scale than other models', so a
            search does not set them against each other.
    """

    structure: tuple[str, ...]
    common: tuple[str, ...]
    looks_ahead: Callable[[dict], str | None]
    output_kinds: tuple[str, ...] = OUTPUT_KINDS
    scales_itself: bool = False
    loss: str | None = None


def family(**declared) -> Callable:
    """Mark a builder as a model family (see `Family` for the arguments)."""

    def mark(builder: Callable) -> Callable:
        builder.family = Family(**declared)
        return builder

    return mark


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted model names, filtered by an fnmatch glob (or comma-separated globs)."""
    return MODELS.list(pattern)


def create_model(name: str, input_shape: Sequence[int | None], num_outputs: int, **kwargs):
    """Build the model registered as `name`; keyword arguments that are None keep its defaults.
    A forecasting task's per-window scaling (`preprocessing["scaling"]`) is put around it
    (`zoo.scaling`) unless the builder scales by itself (`scales_itself = True`)."""
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    build = MODELS.get(name)
    if "scaling" in kwargs.get("preprocessing", {}) and not getattr(build, "scales_itself", False):
        from zoo.scaling import scaled_model  # Keras only when a model is built

        return scaled_model(build, tuple(input_shape), num_outputs, **kwargs)
    return build(tuple(input_shape), num_outputs, **kwargs)


def model_defaults(name: str) -> dict:
    """The hyperparameters model `name` takes (`python -m zoo.train` flags, the tuner's names),
    with their defaults."""
    params = inspect.signature(MODELS.get(name)).parameters.values()
    return {
        p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY and p.name not in NOT_TUNED
    }


def model_hyperparameters(name: str) -> list[str]:
    """The names of the hyperparameters model `name` takes."""
    return list(model_defaults(name))


def looks_ahead(name: str) -> bool:
    """True when the model's output at step t reads inputs after t (bidirectional models, the
    FCN family's convolutions over the whole window). Such a model must not be used where a
    later input is the target (next-step prediction), nor stream."""
    return MODELS.get(name).ahead is not None


def why_it_looks_ahead(name: str) -> str | None:
    """A phrase saying why model `name` looks ahead ("is bidirectional (...)"), or None."""
    return MODELS.get(name).ahead


def model_output_kinds(name: str) -> tuple[str, ...]:
    """The output kinds model `name` can give (its family's)."""
    return MODELS.get(name).output_kinds


def own_loss(name: str) -> str | None:
    """What model `name` trains on in place of the task's loss (its family's `loss`), or None."""
    return MODELS.get(name).loss


def same_family(a: str, b: str) -> bool:
    """True when models `a` and `b` come from one family builder with the same fixed settings."""
    first, second = MODELS.get(a), MODELS.get(b)
    return first.builder is second.builder and first.structure == second.structure


def average_models(models: Sequence, name: str = "ensemble"):
    """One functional model whose output is the mean of `models`' outputs on the same input
    (softmax probabilities for classifiers): a seed ensemble as one `.keras` file. The
    models need distinct names."""
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import keras

    inputs = keras.Input(shape=models[0].input_shape[1:], name="inputs")
    outputs = [model(inputs) for model in models]
    if len(outputs) > 1:
        outputs = [keras.layers.Average(name="average")(outputs)]
    return keras.Model(inputs, outputs[0], name=name)


def reset_states(model) -> None:
    """Zero the state of every stateful recurrent layer of `model`."""
    import keras  # lazy: Keras loads when a model is used, not on `import zoo.models`

    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.RNN) and layer.stateful:
            layer.reset_state()


# ---------------------------------------------------------------- checks


def check(condition: bool, what: str, **received):
    """Raise `ValueError("what. Received: k=v, ...")` unless `condition`."""
    if not condition:
        shown = ", ".join(f"{k}={v!r}" for k, v in received.items())
        raise ValueError(f"{what}. Received: {shown}")


def positive_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def fraction(value) -> bool:
    return isinstance(value, numbers.Real) and 0.0 <= value < 1.0


def check_task_arguments(input_shape, num_outputs, output_kind, kinds=OUTPUT_KINDS, name=""):
    """The checks of what every builder gets from the task: shapes and output kind."""
    check(
        len(input_shape) == 2
        and positive_int(input_shape[1])
        and (input_shape[0] is None or positive_int(input_shape[0])),
        "input_shape must be (steps, features) with positive integers (steps may be None)",
        input_shape=input_shape,
    )
    check(
        positive_int(num_outputs), "num_outputs must be a positive integer", num_outputs=num_outputs
    )
    check(
        output_kind in OUTPUT_KINDS,
        f"output_kind must be one of {OUTPUT_KINDS}",
        output_kind=output_kind,
    )
    check(
        output_kind in kinds,
        f"{name or 'this model'} gives one output a window: output_kind must be one of {kinds}",
        output_kind=output_kind,
    )


def check_common(units=None, dropout=None, recurrent_dropout=None, l2=None, **positive):
    """The checks of the hyperparameters most families share (those given)."""
    for key, value in dict(units=units, **positive).items():
        if value is not None:
            check(positive_int(value), f"{key} must be a positive integer", **{key: value})
    for key, value in dict(dropout=dropout, recurrent_dropout=recurrent_dropout).items():
        if value is not None:
            check(fraction(value), f"{key} must be in [0, 1)", **{key: value})
    if l2 is not None:
        check(isinstance(l2, numbers.Real) and l2 >= 0, "l2 must be a number >= 0", l2=l2)


# ---------------------------------------------------------------- shared layers


def standardization(stats: dict, name: str):
    """(x - mean) / std as a `Rescaling` layer (x * scale + offset): exports everywhere."""
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import keras

    pairs = zip(stats["mean"], stats["std"], strict=True)
    scale, offset = zip(*((1.0 / s, -m / s) for m, s in pairs), strict=True)
    return keras.layers.Rescaling(list(scale), list(offset), name=name)


def window_features(inputs, spec: dict):
    """The per-window features of the raw input (`zoo.layers.WindowFeatures`), standardised
    with the training windows' statistics that the task measured (`zoo.features.feature_spec`)."""
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    from zoo.layers import WindowFeatures

    f = WindowFeatures(spec["channels"], spec["sampling_hz"], name="window_features")(inputs)
    return standardization(spec, "feature_standardization")(f)


def frame_steps(input_shape, preprocessing: dict) -> int:
    """The task's framing (`frame_steps`, 1 when none), checked against the steps."""
    frame = preprocessing.get("frame_steps", 1)
    check(
        positive_int(frame) and (input_shape[0] is None or input_shape[0] % frame == 0),
        "frame_steps must be a positive integer that divides the steps",
        frame_steps=frame,
        steps=input_shape[0],
    )
    return frame


def preprocessing_layers(inputs, input_shape, preprocessing: dict):
    """The model's first layers: the padding mask, standardisation with given statistics, then
    framing (to a fixed number of steps when `inputs` has one)."""
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import keras

    from zoo.layers import PaddingMask

    x = PaddingMask(name="padding_mask")(inputs) if preprocessing.get("mask") else inputs
    if "mean" in preprocessing:
        x = standardization(preprocessing, "standardization")(x)
    frame = frame_steps(input_shape, preprocessing)
    if frame > 1:
        steps = -1 if inputs.shape[1] is None else inputs.shape[1] // frame
        x = keras.layers.Reshape((steps, input_shape[1] * frame), name="framing")(x)
    return x


def output_head(x, output_kind: str, num_outputs: int):
    """The head every builder shares: softmax for the classification kinds, linear otherwise.

    A 3-D `x` gives an output at every step (the sequence kinds), a 2-D `x` one a sample.
    """
    # lazy: keeps Keras out of `import zoo` until the backend is chosen
    import keras

    activation = "softmax" if output_kind.endswith("classification") else None
    return keras.layers.Dense(num_outputs, activation=activation, name="output")(x)


# ---------------------------------------------------------------- variants


def variant(builder: Callable, name: str, doc: str, *, extra: Sequence[str] = (), **settings):
    """Register `name`, a model of the family `builder` with `settings`: those in the family's
    structure are fixed, the others change a hyperparameter's default. It takes the family's
    common hyperparameters, those it sets and those named in `extra`; its signature (for
    `--help`, the CLI's flags and key check, the tuner's space), whether it looks ahead and its
    output kinds follow."""
    declared: Family = builder.family
    params = inspect.signature(builder).parameters
    unknown = (set(settings) | set(extra)) - set(params)
    if unknown:
        raise TypeError(f"variant {name!r}: {builder.__name__} takes no {sorted(unknown)}")
    structure = {k: v for k, v in settings.items() if k in declared.structure}
    takes = [
        *declared.common,
        *(k for k in (*settings, *extra) if k not in declared.structure + declared.common),
    ]
    defaults = {key: settings.get(key, params[key].default) for key in takes}

    def build(
        input_shape,
        num_outputs,
        *,
        output_kind=declared.output_kinds[0],
        preprocessing=None,
        stateful_batch=None,
        name=name,
        **hp,
    ):
        unexpected = set(hp) - set(takes)
        if unexpected:
            raise TypeError(
                f"{name}() got an unexpected keyword argument {sorted(unexpected)[0]!r}"
            )
        return builder(
            input_shape,
            num_outputs,
            **structure,
            **{**defaults, **hp},
            output_kind=output_kind,
            preprocessing=preprocessing,
            stateful_batch=stateful_batch,
            name=name,
        )

    keyword = inspect.Parameter.KEYWORD_ONLY
    build.__signature__ = inspect.Signature(
        [
            params["input_shape"],
            params["num_outputs"],
            inspect.Parameter("output_kind", keyword, default=declared.output_kinds[0]),
            *(inspect.Parameter(k, keyword, default=v) for k, v in defaults.items()),
            inspect.Parameter("preprocessing", keyword, default=None),
            inspect.Parameter("stateful_batch", keyword, default=None),
            inspect.Parameter("name", keyword, default=name),
        ]
    )
    build.__name__ = build.__qualname__ = name
    build.__doc__ = doc
    build.builder = builder
    build.structure = structure
    build.ahead = declared.looks_ahead(structure)
    build.output_kinds = declared.output_kinds
    build.scales_itself = declared.scales_itself
    build.loss = declared.loss
    MODELS.register(build, name=name)
