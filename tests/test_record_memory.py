"""Run records held compactly in memory (raw responses as JSON text, one
shared fields-set per model class) yet unchanged on disk."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tracemalloc

import pytest

from llmops_cli.core.errors import BaselineError
from llmops_cli.record.compact import RawJSON
from llmops_cli.record.schema import Call, CaseRecord, JudgeResult, JudgeSample, RunRecord, load_record, save_record


def _response(i: int) -> dict:
    """What LiteLLM's ``ModelResponse.model_dump(mode="json")`` gives for a short chat answer."""
    return {"id": f"chatcmpl-{i:024x}", "created": 1795333064 + i, "model": "gpt-4o-mini-2024-07-18",
            "object": "chat.completion", "system_fingerprint": "fp_44709d6fcb",
            "choices": [{"finish_reason": "stop", "index": 0,
                         "message": {"content": f"Denver Broncos {i} — ünïcode", "role": "assistant", "tool_calls": None,
                                     "function_call": None, "provider_specific_fields": {"refusal": None}},
                         "provider_specific_fields": {}}],
            "usage": {"completion_tokens": 7, "prompt_tokens": 143, "total_tokens": 150,
                      "completion_tokens_details": {"reasoning_tokens": 0}, "prompt_tokens_details": None},
            "service_tier": None, "score": 0.1 + i / 3}


def _record(n: int) -> RunRecord:
    cases = [CaseRecord(id=f"q{i}", inputs={"question": f"Who won Super Bowl {i}?"}, references=[f"team {i}"],
                        messages=[{"role": "user", "content": f"Who won Super Bowl {i}?"}],
                        calls=[Call(output=f"Denver Broncos {i} — ünïcode", response=_response(i), prompt_tokens=143,
                                    completion_tokens=7, latency_s=0.25, served_model="gpt-4o-mini-2024-07-18")],
                        output=f"Denver Broncos {i} — ünïcode", scores={"token_f1": 0.5, "exact_match": 0.0},
                        stats={"bleu": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]})
             for i in range(n)]
    return RunRecord(run_id="r", dataset_hash="d", fingerprint="f", cases=cases)


def test_a_raw_response_reads_as_the_object_and_is_written_as_one(tmp_path):
    rec = _record(3)
    call = rec.cases[1].calls[0]
    assert isinstance(call.response, RawJSON)
    assert call.response == _response(1)
    assert call.response["choices"][0]["message"]["content"] == call.output
    assert call.response.get("model") == "gpt-4o-mini-2024-07-18" and call.response.get("absent") is None
    assert call.model_dump()["response"] == _response(1)
    path = save_record(rec, tmp_path / "run.json")
    on_disk = json.loads(path.read_text(encoding="utf-8"))
    assert on_disk["cases"][1]["calls"][0]["response"] == _response(1)
    # read back and written again: the same bytes
    again = save_record(load_record(path), tmp_path / "again.json")
    assert again.read_bytes() == path.read_bytes()
    # a baseline leaves the raw responses out, as before
    base = save_record(rec, tmp_path / "baseline.json", as_baseline=True)
    assert all(c["calls"][0]["response"] is None for c in json.loads(base.read_text(encoding="utf-8"))["cases"])


def test_a_response_that_is_not_an_object_is_bad_input(tmp_path):
    path = save_record(_record(2), tmp_path / "run.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    data["cases"][1]["calls"][0]["response"] = ["not", "an", "object"]
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(BaselineError, match=r"cases\.1\.calls\.0\.response.*expected a JSON object"):
        load_record(path)


def test_fields_of_a_loaded_case_can_be_set_and_copied(tmp_path):
    path = save_record(_record(2), tmp_path / "run.json")
    rec = load_record(path)
    case = rec.cases[0]
    case.scores["token_f1"] = 1.0
    case.error = "late failure"
    case.calls[0].cached = True
    copy = case.model_copy(update={"output": "other"})
    assert copy.output == "other" and case.output != "other"
    assert rec.cases[1].error is None and not rec.cases[1].calls[0].cached  # nothing leaked into the other case
    back = load_record(save_record(rec, tmp_path / "edited.json"))
    assert back.cases[0].error == "late failure" and back.cases[0].scores["token_f1"] == 1.0
    assert back.cases[0].calls[0].cached and back.cases[1].error is None


def test_a_loaded_record_holds_under_6_kb_per_case():
    """2,000 cases with a raw response each: ~5.1 KB per case; the parsed
    response dicts and a fields-set per model object made it ~8.8 KB."""
    text = _record(2000).model_dump_json()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        rec = RunRecord.model_validate_json(text)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(rec.cases) == 2000
    assert held / 2000 < 6144, f"{held / 2000:.0f} bytes per case"


def test_release_traces_drops_messages_and_raw_responses():
    rec = _record(3)
    rec.cases[0].judges = {"correct": [JudgeResult(verdict="C", value=1.0,
                                                   samples=[JudgeSample(output="GRADE: C", response={"id": "j"})])]}
    rec.release_traces()
    case = rec.cases[0]
    assert case.messages is None and case.calls[0].response is None and case.judges["correct"][0].samples[0].response is None
    assert case.calls[0].latency_s == 0.25 and case.output and case.scores  # what the gate and reports read stays
    assert case.judges["correct"][0].samples[0].output == "GRADE: C"


@pytest.mark.usefixtures("litellm_loaded")
def test_a_gated_run_keeps_its_traces_in_the_record_file(make_project, tmp_path, monkeypatch):
    """The gate lets the traces go once the record is saved: the file has
    every message and raw response; the outcome's record (reports) does not."""
    from llmops_cli.jobs.evaluate import EvalOptions, evaluate
    from llmops_cli.testing import FakeOpenAI

    monkeypatch.chdir(tmp_path)
    with FakeOpenAI(reply=lambda m, b: "Denver Broncos") as srv:
        cfg = make_project(srv.url)
        assert evaluate(EvalOptions(cfg, update_baseline=True, use_cache=False)).exit_code == 0
        out = evaluate(EvalOptions(cfg, use_cache=False, record_path=tmp_path / "run.json"))
    assert out.exit_code == 0 and out.status == "passed"
    saved = load_record(tmp_path / "run.json")
    assert all(c.messages and c.calls[0].response["choices"][0]["message"]["content"] == "Denver Broncos"
               for c in saved.cases)
    assert all(c.messages is None and c.calls[0].response is None for c in out.record.cases)
    assert [c.output for c in out.record.cases] == [c.output for c in saved.cases]


def _scored_pair(tmp_path, n: int = 300):
    """A baseline file and a candidate record scored by the real scorers
    (token_f1, exact_match, corpus BLEU with its per-case statistics)."""
    from llmops_cli.record.schema import MetricSummary
    from llmops_cli.measure.scorers import SCORERS, score_all

    metrics = ["token_f1", "exact_match", "bleu"]
    refs = [[f"the {i % 7} river crossing"] for i in range(n)]

    def run(outputs, kind):
        results = score_all(metrics, outputs, refs)
        cases = [CaseRecord(id=f"c{i}", inputs={"question": f"where {i}?"}, references=refs[i], output=outputs[i],
                            scores={m: results[m].per_case[i] for m in metrics},
                            stats={m: results[m].stats[i] for m in metrics if results[m].stats})
                 for i in range(n)]
        summaries = {m: MetricSummary(aggregate=results[m].aggregate, scale=SCORERS[m].scale, n_scored=n) for m in metrics}
        return RunRecord(kind=kind, run_id=kind, dataset_hash="d", fingerprint="f", metrics=summaries, cases=cases)

    base = run([f"the {i % 7} river crossing" if i % 4 else f"a {i} road" for i in range(n)], "baseline")
    cand = run([f"the {i % 7} river crossing" if i % 2 else f"a {i} road" for i in range(n)], "run")  # half wrong, not a quarter
    return save_record(base, tmp_path / "baseline.json", as_baseline=True), cand


def test_a_baseline_loaded_to_gate_holds_only_what_the_gate_reads_and_gates_alike(tmp_path):
    """``load_baseline(gated=True)``: each case only its output, error,
    scores, statistics and retrieval, read only; the comparison is the same
    as against the whole baseline, at less than half the memory per case."""
    from llmops_cli.gate.baseline import GatedBaseline, GatedRow, load_baseline
    from llmops_cli.config import Gate, GateRule
    from llmops_cli.gate.rules import compare

    path, cand = _scored_pair(tmp_path)
    sizes = {}
    for gated in (False, True):
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            loaded = load_baseline(path, gated=gated)
            sizes[gated] = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        if gated:
            slim = loaded
        else:
            whole = loaded
    assert isinstance(slim, GatedBaseline) and all(type(c) is GatedRow for c in slim.cases)
    assert not hasattr(slim.cases[0], "inputs") and not hasattr(slim.cases[0], "references")
    assert [(c.id, c.output, c.error, c.scores, c.stats) for c in slim.cases] == \
           [(c.id, c.output, c.error, c.scores, c.stats) for c in whole.cases]
    assert slim.metrics == whole.metrics and slim.dataset_hash == whole.dataset_hash
    assert sizes[True] < 0.5 * sizes[False], sizes
    with pytest.raises(AttributeError):
        slim.cases[0].output = "changed"

    gate = Gate(metrics={"token_f1": GateRule(max_drop=0.01), "bleu": GateRule(max_drop=1.0)})
    a, b = compare(whole, cand, gate), compare(slim, cand, gate)
    assert [(m.metric, m.verdict, m.delta, m.ci_low, m.ci_high, m.p_value) for m in a.metrics] == \
           [(m.metric, m.verdict, m.delta, m.ci_low, m.ci_high, m.p_value) for m in b.metrics]
    assert {m.verdict for m in a.metrics} == {"regressed"}
    assert [(c.id, c.delta, c.baseline_output) for c in a.changed_cases] == \
           [(c.id, c.delta, c.baseline_output) for c in b.changed_cases]


def test_a_malformed_baseline_case_is_still_bad_input_when_loaded_to_gate(tmp_path):
    from llmops_cli.gate.baseline import load_baseline

    path, _ = _scored_pair(tmp_path, 5)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["cases"][2]["scores"]["token_f1"] = "high"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(BaselineError, match=r"cases\.2\.scores\.token_f1"):
        load_baseline(path, gated=True)


def test_scores_and_statistics_hold_one_float_object_per_value(tmp_path):
    """Equal scores and BLEU statistics share one float object, whether
    scored in this process or loaded from a file; -0.0 and NaN are kept as
    they are, and the file is unchanged."""
    import math

    from llmops_cli.record.compact import shared_float

    path, cand = _scored_pair(tmp_path, 50)
    back = load_record(path)
    for rec in (cand, back):
        ones = [c.scores["exact_match"] for c in rec.cases if c.scores["exact_match"] == 1.0]
        assert len(ones) > 10 and all(x is ones[0] for x in ones)
        first = [c.stats["bleu"][0] for c in rec.cases if c.stats["bleu"][0] == rec.cases[0].stats["bleu"][0]]
        assert len(first) > 1 and all(type(x) is float and x is first[0] for x in first)
    assert math.copysign(1.0, shared_float(-0.0)) < 0 and shared_float(0.0) == 0.0
    assert math.isnan(shared_float(float("nan")))
    assert save_record(back, tmp_path / "again.json", as_baseline=True).read_bytes() == path.read_bytes()


def test_an_answer_cached_before_served_model_was_kept_reads_it_from_its_raw_response():
    from llmops_cli.run.execute import _cached_call

    call = _cached_call({"output": "Denver Broncos", "response": _response(4)}, 1)
    assert call.cached and call.repeat == 1 and isinstance(call.response, RawJSON)
    assert call.served_model == "gpt-4o-mini-2024-07-18" and call.system_fingerprint == "fp_44709d6fcb"
    assert _cached_call({"output": "x", "response": None}, 0).served_model is None


# -- a large record is read one case at a time ------------------------------------------------

@pytest.fixture
def stream_all(monkeypatch):
    """Every record read one case at a time, however small."""
    from llmops_cli.record import schema

    monkeypatch.setattr(schema, "STREAM_ABOVE", -1)


def test_a_record_read_one_case_at_a_time_is_the_record_read_whole(tmp_path, monkeypatch):
    from llmops_cli.gate.baseline import load_baseline
    from llmops_cli.record import schema

    rec = _record(40)
    rec.cases[3].error, rec.cases[3].scores["token_f1"] = "timeout", None
    path = save_record(rec, tmp_path / "run.json")
    base = save_record(rec, tmp_path / "baseline.json", as_baseline=True)
    whole = (load_record(path), load_baseline(base), load_baseline(base, gated=True))
    monkeypatch.setattr(schema, "STREAM_ABOVE", -1)
    streamed = (load_record(path), load_baseline(base), load_baseline(base, gated=True))
    for a, b in zip(whole, streamed):
        assert type(a) is type(b) and [type(c) for c in a.cases] == [type(c) for c in b.cases]
        assert a.model_dump(exclude={"cases"}) == b.model_dump(exclude={"cases"}) and a.cases == b.cases
        assert a.model_fields_set == b.model_fields_set
    assert save_record(streamed[0], tmp_path / "again.json").read_bytes() == path.read_bytes()
    # a record whose cases are not its last field (edited by hand) reads the same
    data = json.loads(path.read_text(encoding="utf-8"))
    cases = data.pop("cases")
    moved = tmp_path / "moved.json"
    moved.write_text(json.dumps({"cases": cases, **data}), encoding="utf-8")
    assert load_record(moved).model_dump() == whole[0].model_dump()
    # "cases" given twice: the last one, as json.loads (and the one-pass parse) read it — never both
    text = path.read_text(encoding="utf-8")
    twice = tmp_path / "twice.json"
    twice.write_text('{"cases": [' + json.dumps(cases[0]) + '], ' + text.lstrip()[1:], encoding="utf-8")
    assert [c.id for c in load_record(twice).cases] == [c.id for c in whole[0].cases]


@pytest.mark.usefixtures("stream_all")
@pytest.mark.parametrize("edit, key", [
    (lambda t: t.replace('"token_f1": 0.5', '"token_f1": NaN', 1), r"cases\[0\] \(id 'q0'\)\.scores\.token_f1"),
    (lambda t: t[: len(t) // 2], "line"),
    (lambda t: json.dumps({**json.loads(t), "cases": {"q0": {}}}), "cases"),
    (lambda t: json.dumps([json.loads(t)]), None),
    (lambda t: t.replace('"id": "q1"', '"id": 7', 1), r"cases\.1\.id"),
])
def test_bad_input_read_one_case_at_a_time_is_named_as_before(tmp_path, edit, key):
    path = save_record(_record(3), tmp_path / "run.json")
    path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    with pytest.raises(BaselineError) as e:
        load_record(path)
    assert "run.json" in str(e.value)
    if key is not None:
        assert re.search(key, str(e.value)), str(e.value)


def _peak_growth_mb(path, stream_above: int) -> float:
    """Peak RSS growth (MB) of a fresh process loading ``path`` as a baseline to gate against."""
    script = ("from llmops_cli.record import schema\nfrom llmops_cli.gate.baseline import load_baseline\n"
              "def hwm():  # this process's own peak (ru_maxrss would start from the forking parent's)\n"
              "    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
              f"schema.STREAM_ABOVE = {stream_above}\n"
              "before = hwm()\n"
              f"b = load_baseline({str(path)!r}, gated=True)\n"
              "print((hwm() - before) / 1024, len(b.cases))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0])


def test_a_large_baseline_read_one_case_at_a_time_peaks_far_lower(tmp_path):
    """Parsed whole, a baseline's JSON tree is built before any case is: a
    20,000-case baseline (~15 MB) grew the peak RSS by several times its
    size; read one case at a time, by about what its cases keep."""
    rec = _record(20_000)
    path = save_record(rec, tmp_path / "baseline.json", as_baseline=True)
    size_mb = path.stat().st_size / 2**20
    whole, streamed = _peak_growth_mb(path, 2**62), _peak_growth_mb(path, -1)
    assert streamed < 0.5 * whole, (streamed, whole, size_mb)
    assert streamed < 2 * size_mb, (streamed, whole, size_mb)
