"""The model zoo: model families, each one small module, and their variants registered by name.

- `base`: the registry (`MODELS`, `create_model`, `list_models`, ...), `family` and
  `variant()`, the checks, the preprocessing layers and the output head every family shares;
- `recurrent`: `recurrent_model` and its variants (`lstm`, `bilstm`, `conv_lstm`, ...);
- `fcn`: `rnn_fcn_model`, a recurrent branch beside a fully convolutional one (`lstm_fcn`,
  `mlstm_fcn`, `gru_fcn`);
- `esrnn`: `es_rnn_model`, exponential smoothing and a recurrent network in one forecaster
  (`es_rnn`, Smyl 2020).

A new family is a module with one `@family(...)` builder and its `variant(...)` lines, imported
below. Keras is imported when a model is built, so listing the zoo is instant.
"""

from zoo.models import esrnn, fcn, recurrent  # noqa: F401 - registers each family's variants
from zoo.models.base import (
    MODELS,
    NOT_TUNED,
    OUTPUT_KINDS,
    Family,
    average_models,
    create_model,
    family,
    list_models,
    looks_ahead,
    model_defaults,
    model_hyperparameters,
    model_output_kinds,
    output_head,
    own_loss,
    reset_states,
    same_family,
    variant,
    why_it_looks_ahead,
)
from zoo.models.esrnn import es_rnn_model
from zoo.models.fcn import rnn_fcn_model
from zoo.models.recurrent import CELLS, POOLINGS, layer_class, recurrent_layer, recurrent_model

__all__ = [
    "CELLS",
    "MODELS",
    "NOT_TUNED",
    "OUTPUT_KINDS",
    "POOLINGS",
    "Family",
    "average_models",
    "create_model",
    "es_rnn_model",
    "family",
    "layer_class",
    "list_models",
    "looks_ahead",
    "model_defaults",
    "model_hyperparameters",
    "model_output_kinds",
    "output_head",
    "own_loss",
    "recurrent_layer",
    "recurrent_model",
    "reset_states",
    "rnn_fcn_model",
    "same_family",
    "variant",
    "why_it_looks_ahead",
]
