"""The registry: registration, globbing, duplicates, unknown names."""

from __future__ import annotations

import pytest

from zoo import MODELS, TASKS, Registry, UnknownNameError, list_models


def _registry():
    reg = Registry("model")
    for name in ("lstm", "bilstm", "gru", "bigru", "rnn"):
        reg.register(lambda: None, name=name)
    return reg


def test_register_by_function_name_and_get():
    reg = Registry("thing")

    @reg.register
    def alpha():
        """First line of alpha.

        More text."""

    assert reg.get("alpha") is alpha
    assert "alpha" in reg and len(reg) == 1
    assert reg.describe("alpha") == "First line of alpha."


def test_list_is_sorted_and_globs():
    reg = _registry()
    assert reg.list() == ["bigru", "bilstm", "gru", "lstm", "rnn"]
    assert reg.list("*lstm*") == ["bilstm", "lstm"]
    assert reg.list("bi*") == ["bigru", "bilstm"]
    assert reg.list("lstm,gru") == ["gru", "lstm"]
    assert reg.list("nothing*") == []


def test_duplicate_name_is_an_error():
    reg = _registry()
    with pytest.raises(ValueError, match="'lstm' is already registered"):
        reg.register(lambda: None, name="lstm")


def test_unknown_name_suggests_and_lists():
    reg = _registry()
    with pytest.raises(UnknownNameError) as info:
        reg.get("lstn")
    message = str(info.value)
    assert message.startswith("Unknown model 'lstn'. Did you mean: 'lstm'")
    assert message.endswith("Available: bigru, bilstm, gru, lstm, rnn")
    assert isinstance(info.value, KeyError)


def test_unknown_name_without_close_match_has_no_suggestion():
    with pytest.raises(UnknownNameError) as info:
        _registry().get("transformer")
    assert "Did you mean" not in str(info.value)


def test_project_registries_hold_the_issue_names():
    expected = {
        "rnn", "lstm", "gru", "birnn", "bilstm", "bigru", "stacked_lstm", "deep_lstm",
        "peephole_lstm", "conv_lstm", "attention_lstm", "res_bilstm",
    }  # fmt: skip
    assert expected <= set(list_models())
    assert {"har", "echo", "count_ones", "sine", "random_walk", "digits", "mnist", "npz"} <= set(
        TASKS.list()
    )
    assert all(MODELS.describe(name) for name in list_models())
    assert all(TASKS.describe(name) for name in TASKS.list())
