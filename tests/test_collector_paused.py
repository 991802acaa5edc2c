"""Heavy imports run with the garbage collector paused (llmops_cli.core.imports):
it is back on afterwards — after an error too — and stays off when it was off."""

from __future__ import annotations

import gc

import pytest

from llmops_cli.core.imports import collector_paused


@pytest.fixture(autouse=True)
def _restore():
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def test_paused_inside_and_enabled_after_even_on_an_error():
    gc.enable()
    with pytest.raises(ImportError):
        with collector_paused():
            assert not gc.isenabled()
            import llmops_cli_no_such_module  # noqa: F401
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off():
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()


def test_scorer_libraries_import_leaves_the_collector_on(monkeypatch):
    from llmops_cli.measure import scorers

    gc.enable()
    monkeypatch.delitem(__import__("sys").modules, "rouge_score.rouge_scorer", raising=False)
    scorers.import_lean("rouge_score.rouge_scorer")
    assert gc.isenabled()
