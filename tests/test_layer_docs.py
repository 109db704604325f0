"""The public layers' docstrings: Keras' sections (Args, Call arguments, Example, Reference),
every constructor argument named, and each Example run as a doctest with its output compared.

A public layer is a `keras.layers.Layer` subclass (models included) defined in one of the
layer modules with no leading underscore; every layer the zoo registers for `load_model` must
be one of them, so a new layer in a new module is caught here too."""

from __future__ import annotations

import doctest
import importlib
import inspect
import io
import re

import keras
import numpy as np
import pytest

from zoo.kernels import lstm_op

LAYER_MODULES = ("zoo.layers", "zoo.scan", "zoo.fused", "zoo.scaling", "zoo.smoothing")
SECTIONS = ("Args", "Call arguments", "Example")
NO_PAPER = {"PaddingMask", "MaskedConv1D"}  # engineering, not a published method


def public_layers() -> dict[str, type]:
    found = {}
    for module_name in LAYER_MODULES:
        for name, obj in vars(importlib.import_module(module_name)).items():
            if (
                isinstance(obj, type)
                and issubclass(obj, keras.layers.Layer)
                and obj.__module__ == module_name
                and not name.startswith("_")
            ):
                found[name] = obj
    return found


LAYERS = public_layers()


def sections(cls) -> dict[str, str]:
    """Section name -> its text, from the lines `Name:` alone at the docstring's left margin."""
    doc = inspect.getdoc(cls)
    parts = re.split(r"^([A-Z][a-z]+(?: [a-z]+)?):$", doc, flags=re.M)
    return {"summary": parts[0], **dict(zip(parts[1::2], parts[2::2], strict=True))}


def test_every_registered_zoo_layer_is_listed():
    registered = {
        key.split(">", 1)[1]
        for key, obj in keras.saving.get_custom_objects().items()
        if key.startswith("zoo>") and isinstance(obj, type) and issubclass(obj, keras.layers.Layer)
    }
    assert registered and registered <= set(LAYERS)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_docstring_has_keras_sections(name):
    cls = LAYERS[name]
    found = sections(cls)
    first, _, rest = found["summary"].partition("\n")
    assert first.endswith(".") and rest.startswith("\n"), "a one-line summary, then a blank line"
    wanted = SECTIONS + (() if name in NO_PAPER else ("Reference",))
    assert set(wanted) <= set(found), f"{name} lacks {set(wanted) - set(found)}"
    if "__init__" in vars(cls):  # its own arguments: each named in Args (Keras' are Keras')
        # an entry is `name: ...` (or `*args, **kwargs: ...`) at the section's first indent
        named = {
            n
            for line in re.findall(r"^    (\S[^:]*):", found["Args"], re.M)
            for n in line.split(", ")
        }
        star = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
        for parameter in list(inspect.signature(cls.__init__).parameters.values())[1:]:
            label = star.get(parameter.kind, "") + parameter.name
            assert label in named, f"{name}'s Args does not name {label}"


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_docstring_example_runs(name, monkeypatch):
    cls = LAYERS[name]
    module = importlib.import_module(cls.__module__)
    globs = {**vars(module), "np": np, "keras": keras}
    [test] = doctest.DocTestFinder(recurse=False).find(cls, name, module=module, globs=globs)
    assert test.examples, f"{name}'s Example has no >>> lines"
    native_loaded = lstm_op.cache_info().currsize > 0
    if not native_loaded:
        # Building the C++ op costs about 25 s; NativeLSTM's example prints the same without it
        # (tests/test_kernels.py holds the op equal to Keras). Forget the switch afterwards.
        monkeypatch.setenv("RNN_ZOO_NATIVE", "0")
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = io.StringIO()
    try:
        runner.run(test, out=report.write)
    finally:
        if not native_loaded:
            lstm_op.cache_clear()
    assert runner.failures == 0, report.getvalue()
