"""A judge's criteria, samples and reduce decide its grades, so they join the
config fingerprint; the run summary shows the "judge self-agreement" column
only when a judge is listed."""

from __future__ import annotations

from rich.console import Console

from llmops_cli import prepare
from llmops_cli.config import load_config as _load_config
from llmops_cli.core.fingerprint import fingerprint
from llmops_cli.report.terminal import print_run_summary
from test_gate import make_record


def load_config(path):
    """The config as a run uses it: parsed, then prepared."""
    return prepare(_load_config(path))


def fp(make_project, judge: str) -> str:
    cfg = load_config(make_project(extra=f"judges:\n  quality: {judge}\n"))
    return fingerprint(cfg.snapshot())


def test_criteria_samples_and_reduce_join_the_fingerprint(make_project):
    base = fp(make_project, '{type: rubric, criteria: "Is it polite?"}')
    assert fp(make_project, '{type: rubric, criteria: "Is it polite?"}') == base
    assert fp(make_project, '{type: rubric, criteria: "Is it correct?"}') != base
    assert fp(make_project, '{type: rubric, criteria: "Is it polite?", samples: 3}') != base
    assert fp(make_project, '{type: rubric, criteria: "Is it polite?", samples: 3, reduce: mean}') != \
        fp(make_project, '{type: rubric, criteria: "Is it polite?", samples: 3, reduce: majority}')
    # a judge that sets none of them keeps the fingerprint it had
    cfg = load_config(make_project(extra="judges:\n  correctness: {type: correctness}\n"))
    assert set(cfg.effective_judge("correctness")) == {"model", "api_base", "params", "template_sha256"}


def summary_text(record) -> str:
    console = Console(record=True, width=200)
    print_run_summary(console, record)
    return console.export_text()


def test_self_agreement_column_only_with_a_judge():
    rec = make_record(["a", "b"], {"token_f1": [1.0, 0.5]})
    assert "self-agreement" not in summary_text(rec)
    rec.metrics["quality"] = rec.metrics["token_f1"].model_copy(update={"info": {"judge": True, "self_agreement": 0.9}})
    assert "judge self-agreement" in summary_text(rec)
