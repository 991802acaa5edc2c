"""A run of more cases than one chunk (llmops_cli.jobs.chunked_run): planned,
answered and scored a chunk at a time, each finished case held on disk
(llmops_cli.record.spool) — and recorded, gated and reported exactly as the
same run made whole."""

from __future__ import annotations

import json

import pytest

from llmops_cli.config import load_config
from llmops_cli.core.errors import ConfigError, Interrupted, RunIncomplete
from llmops_cli.jobs.evaluate import EvalOptions, evaluate
from llmops_cli.jobs.recording import NOT_RUN
from llmops_cli.jobs.runner import run_eval
from llmops_cli.record.schema import CaseRecord, load_record, save_record
from llmops_cli.record.spool import CaseRow
from llmops_cli.testing import FakeOpenAI

from conftest import ANSWERS, CONFIG_TEMPLATE, CORPUS, QUESTIONS, write_jsonl

MORE = [*QUESTIONS, *({**q, "id": q["id"] + "b", "question": q["question"].replace("?", " again?")} for q in QUESTIONS)]
# the model under test: ANSWERS, with "again" questions answered by their first form; the judge: C when it names a team
EXTRA = """\
checks:
  short: {length: {max: 3, unit: words}}
judges:
  correctness: {type: correctness}
"""
VOLATILE = {"run_id", "created_at", "usage", "judge_usage"}  # timing and identity
TIMING = {"latency_s", "queue_s", "backoff_s", "response"}  # a response holds its id and creation time


def project(tmp_path, url, rows=None, extra=EXTRA, **kw):
    """The conftest project with 12 questions, a ``kind`` slice, a check, a judge and latency."""
    write_jsonl(tmp_path / "corpus.jsonl", CORPUS)
    write_jsonl(tmp_path / "questions.jsonl", rows or questions())
    text = CONFIG_TEMPLATE.format(api_base=url, **{"timeout": 10, "max_error_share": 0.1, **kw})
    text = text.replace("references: answers}", "references: answers, slices: [kind]}")
    text = text.replace("metrics: [exact_match, token_f1, bleu, rougeL]",
                        "metrics: [exact_match, token_f1, bleu, rougeL, prompt_tokens]")
    (tmp_path / "llmops.yaml").write_text(text + extra, encoding="utf-8")
    return tmp_path / "llmops.yaml"


def reply(messages, body):
    text = "\n".join(m["content"] for m in messages if isinstance(m.get("content"), str))
    if "GRADE" in text:
        return "GRADE: C" if "Broncos" in text or "Panthers" in text else "GRADE: I"
    question = text.rsplit("Question: ", 1)[1].strip().replace(" again?", "?")
    return ANSWERS[question]


def questions():
    return [{**q, "kind": "again" if q["id"].endswith("b") else "first"} for q in MORE]


def without(data: dict, keys) -> dict:
    return {k: v for k, v in data.items() if k not in keys}


def comparable(path) -> dict:
    data = json.loads(path.read_text(encoding="utf-8"))
    for case in data["cases"]:
        case["calls"] = [without(c, TIMING) for c in case["calls"]]
        for results in case["judges"].values():
            for res in results:
                res["samples"] = [without(s, TIMING) for s in res["samples"]]
    return without(data, VOLATILE)


def test_a_chunked_run_records_what_the_whole_run_records(tmp_path):
    with FakeOpenAI(reply=reply) as srv:
        cfg = load_config(project(tmp_path, srv.url))
        whole = run_eval(cfg, concurrency=3)
        chunked = run_eval(cfg, concurrency=3, chunk=5)  # chunks of 5, 5 and 2 cases
    assert all(isinstance(c, CaseRecord) for c in whole.cases)
    assert [type(c) for c in chunked.cases] == [CaseRow] * 12
    a, b = save_record(whole, tmp_path / "whole.json"), save_record(chunked, tmp_path / "chunked.json")
    assert comparable(a) == comparable(b)
    assert set(whole.metrics) == {"exact_match", "token_f1", "bleu", "rougeL", "prompt_tokens", "short", "correctness"}
    assert whole.metrics["correctness"].n_scored == 12 and whole.slices["kind"]["again"]["n"] == 6
    for key in ("calls", "prompt_tokens", "completion_tokens", "errors"):
        assert getattr(chunked.usage, key) == getattr(whole.usage, key)
        assert getattr(chunked.judge_usage, key) == getattr(whole.judge_usage, key)
    # read back, the chunked record is an ordinary one; written again, the same bytes
    again = load_record(b)
    assert save_record(again, tmp_path / "again.json").read_bytes() == b.read_bytes()


def test_a_spooled_case_reads_like_a_case_record_and_cannot_be_changed(tmp_path):
    with FakeOpenAI(reply=reply) as srv:
        cfg = load_config(project(tmp_path, srv.url))
        rec = run_eval(cfg, concurrency=2, chunk=4)
    row = rec.cases[6]
    assert row.id == "q1b" and row.output == "The Denver Broncos" and row.inputs == {"question": MORE[6]["question"]}
    assert row.calls[0].output == row.output and row.calls[0].response["choices"][0]["message"]["content"] == row.output
    assert row.judges["correctness"][0].verdict == "C" and row.retrieval.chunks[0].text
    assert row.messages[-1]["content"].endswith(MORE[6]["question"])
    assert row.without_traces().messages is None and row.scores["short"] == 1.0
    with pytest.raises(AttributeError):
        row.output = "changed"
    rec.release_traces()  # a no-op on spooled cases: they hold no traces in memory
    assert rec.cases[6].calls[0].response is not None


def test_a_chunked_run_is_gated_and_written_as_a_baseline_like_a_whole_one(tmp_path, monkeypatch):
    import llmops_cli.jobs.runner as runner

    with FakeOpenAI(reply=reply) as srv:
        path = project(tmp_path, srv.url)
        monkeypatch.chdir(path.parent)
        made = evaluate(EvalOptions(path, update_baseline=True, use_cache=False, concurrency=4))
        assert made.exit_code == 0
        whole_baseline = path.with_name("baseline.json").read_text(encoding="utf-8")
        monkeypatch.setattr(runner, "CHUNK", 5)
        monkeypatch.setattr(runner.run_eval, "__kwdefaults__", {**runner.run_eval.__kwdefaults__, "chunk": 5})
        gated = evaluate(EvalOptions(path, use_cache=False, concurrency=4, markdown="summary.md", html="report.html"))
        assert gated.exit_code == 0, gated.reason
        assert all(isinstance(c, CaseRow) for c in gated.record.cases)
        assert "12 cases" in (path.parent / "summary.md").read_text(encoding="utf-8")
        assert "Broncos" in (path.parent / "report.html").read_text(encoding="utf-8")
        again = evaluate(EvalOptions(path, update_baseline=True, use_cache=False, concurrency=4))
        assert again.exit_code == 0
    chunked_baseline = json.loads(path.with_name("baseline.json").read_text(encoding="utf-8"))
    assert without(chunked_baseline, VOLATILE) == without(json.loads(whole_baseline), VOLATILE) | {
        "cases": chunked_baseline["cases"]}
    assert [without(c, {"calls", "judges"}) for c in chunked_baseline["cases"]] == [
        without(c, {"calls", "judges"}) for c in json.loads(whole_baseline)["cases"]]


def test_a_bad_row_in_the_last_chunk_is_exit_2_before_any_call(tmp_path):
    rows = questions()
    rows[-1]["question"] = "Which (team lost to the Broncos?"  # rendered into the check's regex: invalid there
    extra = EXTRA.replace("short: {length: {max: 3, unit: words}}", 'echo: {regex: "{{ question }}"}')
    with FakeOpenAI(reply=reply) as srv:
        cfg = load_config(project(tmp_path, srv.url, rows, extra))
        with pytest.raises(ConfigError, match="checks.echo"):
            run_eval(cfg, chunk=4)
        assert srv.request_count == 0


def test_too_many_failures_stop_the_chunks_not_yet_started(tmp_path):
    with FakeOpenAI(reply=reply, down=True) as srv:
        cfg = load_config(project(tmp_path, srv.url, max_error_share=0.0, timeout=2))
        with pytest.raises(RunIncomplete, match=r"of 12 cases failed") as err:
            run_eval(cfg, concurrency=2, chunk=4, retries=0)
    rec = err.value.record
    assert rec.status == "incomplete" and len(rec.cases) == 12
    assert [c.id for c in rec.cases] == [q["id"] for q in MORE]
    assert all(c.error for c in rec.cases) and rec.cases[-1].error == NOT_RUN
    assert rec.usage.calls <= 4  # the first chunk's; no later chunk started


def test_ctrl_c_in_a_later_chunk_keeps_the_chunks_done(tmp_path):
    seen = []

    def progress(done, total):
        seen.append(done)
        if done == 6:
            raise KeyboardInterrupt

    with FakeOpenAI(reply=reply) as srv:
        cfg = load_config(project(tmp_path, srv.url, extra=EXTRA.split("judges:")[0]))
        with pytest.raises(Interrupted) as err:
            run_eval(cfg, concurrency=1, chunk=4, progress=progress)
    rec = err.value.record
    assert rec.status == "interrupted" and len(rec.cases) == 12
    assert all(c.error is None and c.scores["token_f1"] is not None for c in rec.cases[:4])
    assert rec.cases[-1].error == NOT_RUN and seen[-1] == 6
    # spooled rows, the chunk in hand and the cases never planned make one record on disk
    back = load_record(save_record(rec, tmp_path / "partial.json"))
    assert [c.id for c in back.cases] == [q["id"] for q in MORE] and back.status == "interrupted"
    assert back.cases[0].calls[0].output == rec.cases[0].output and back.cases[-1].calls == []


def test_a_chunked_run_holds_a_fraction_of_the_memory_per_case(tmp_path):
    """What the returned record keeps alive, measured by letting it go: each
    spooled case holds its scores and output, not its calls, raw responses,
    messages, retrieval or inputs (those are on disk)."""
    import gc
    import tracemalloc

    rows = [{**q, "id": f"{q['id']}-{i}", "kind": "first"} for i in range(20) for q in QUESTIONS]  # 120 cases
    held = {}
    with FakeOpenAI(reply=reply) as srv:
        cfg = load_config(project(tmp_path, srv.url, rows, extra=EXTRA.split("judges:")[0]))
        for chunk in (1000, 40):
            tracemalloc.start()
            try:
                rec = run_eval(cfg, concurrency=4, chunk=chunk)
                assert len(rec.cases) == 120 and all(c.scores["token_f1"] is not None for c in rec.cases)
                gc.collect()
                before = tracemalloc.get_traced_memory()[0]
                del rec
                gc.collect()
                held[chunk] = before - tracemalloc.get_traced_memory()[0]
            finally:
                tracemalloc.stop()
    assert held[40] < 0.4 * held[1000], held


def test_an_unwritable_temporary_folder_is_one_line_naming_it(tmp_path, monkeypatch):
    from llmops_cli.core.errors import OutputError
    from llmops_cli.record.spool import CaseSpool

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "absent"))  # as a $TMPDIR that is gone
    with pytest.raises(OutputError, match="absent.*TMPDIR"):
        CaseSpool()
