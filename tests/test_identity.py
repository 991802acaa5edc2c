"""The gate keeps its promise: pinned judges (their effective model, api_base,
params and template are part of the configuration's identity, and gating
against a baseline judged by another model is refused), served-model drift
(what the provider said served each answer, kept through the cache, summed in
the record and the baseline, `--refresh`), and soundness (the model under
test never sees the references, memoised scores are keyed by the scoring
libraries' versions, the fingerprint ignores what changes no answer, library
versions are recorded, and every command that writes a baseline applies the
same checks). Model calls go to the fake OpenAI-compatible server."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from importlib import metadata
from importlib import resources
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import ANSWERS, QUESTIONS, run_in_fresh_process
from llmops_cli.measure import score as scoring
from llmops_cli.gate.baseline import check_judges, write_baseline
from llmops_cli.core.cache import Cache
from llmops_cli.cli import cli
from llmops_cli import prepare
from llmops_cli.config import load_config as _load_config
from llmops_cli.core.fingerprint import config_diff, fingerprint
from llmops_cli.core.errors import BaselineError, ConfigError, RunIncomplete
from llmops_cli.record.environment import version_changes as environment_changes
from llmops_cli.record.schema import load_record
from llmops_cli.plan.requests import make_plan
from llmops_cli.jobs.runner import run_eval
from llmops_cli.measure.score import scorer_versions
from llmops_cli.testing import FakeOpenAI


def load_config(path):
    """The config as a run uses it: parsed, then prepared (templates, metric
    names, judge templates, checks; :func:`llmops_cli.prepare`)."""
    return prepare(_load_config(path))

pytestmark = pytest.mark.usefixtures("litellm_loaded")

N = len(QUESTIONS)
GRADES = {"q1": "C", "q2": "P", "q3": "C", "q4": "C", "q5": "I", "q6": "C"}
ID_OF = {q["question"]: q["id"] for q in QUESTIONS}


# -- a fake server that is both the model under test and the judge ---------------

def is_judge(messages) -> bool:
    return "GRADE: X" in messages[-1]["content"]


class Both:
    """Answers ANSWERS as the model under test and GRADES as the judge;
    ``verdicts`` switches the judge to replies without a verdict."""

    def __init__(self):
        self.verdicts = True

    def __call__(self, messages, body):
        text = messages[-1]["content"]
        if is_judge(messages):
            question = text.split("Question: ", 1)[1].splitlines()[0]
            return f"ok\nGRADE: {GRADES[ID_OF[question]]}" if self.verdicts else "no verdict here"
        return ANSWERS[text.rsplit("Question: ", 1)[1].strip()]


def judge_requests(srv) -> list[dict]:
    return [b for b in srv.requests if is_judge(b["messages"])]


def model_requests(srv) -> list[dict]:
    return [b for b in srv.requests if not is_judge(b["messages"])]


def with_judge(make_project, url, judge: str = "{type: correctness}", gated: bool = True, extra: str = "") -> Path:
    """A project whose gate has a rule for the ``correctness`` judge (and token_f1)."""
    path = make_project(url, extra=f"judges:\n  correctness: {judge}\n{extra}")
    if gated:
        path.write_text(path.read_text().replace("    token_f1: {max_drop: 0.05}\n",
                                                 "    token_f1: {max_drop: 0.05}\n    correctness: {max_drop: 0.1}\n"))
    return path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def run_cli(*args):
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert res.exception is None or isinstance(res.exception, SystemExit), (res.exception, res.output)
    return res


def packaged_sha(kind: str = "correctness") -> str:
    text = resources.files("llmops_cli.measure").joinpath("templates", f"{kind}.j2").read_text(encoding="utf-8")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# == A. pinned judges ================================================================

def test_a_judge_that_follows_the_model_is_part_of_the_identity(make_project):
    path = with_judge(make_project, "http://127.0.0.1:9/v1")
    old = load_config(path).snapshot()
    eff = old["judges"]["correctness"]["effective"]
    assert old["judges"]["correctness"]["model"] is None  # declared: follows the model under test
    assert eff == {"model": "openai/fake-model", "api_base": "http://127.0.0.1:9/v1",
                   "params": {"temperature": 0.0, "max_tokens": 512, "top_p": None, "seed": None, "stop": None,
                              "timeout": 60.0},
                   "template_sha256": packaged_sha()}
    edit(path, "model: openai/fake-model", "model: openai/other-model")
    new = load_config(path).snapshot()
    assert fingerprint(new, "c") != fingerprint(old, "c")
    assert config_diff(old, new) == ['judges.correctness.model: "openai/fake-model" → "openai/other-model"',
                                     'model: "openai/fake-model" → "openai/other-model"']


def test_a_pinned_judge_does_not_follow_the_model(make_project):
    path = with_judge(make_project, "http://127.0.0.1:9/v1", "{model: openai/judge-a, api_base: 'http://127.0.0.1:8/v1'}")
    old = load_config(path).snapshot()
    edit(path, "model: openai/fake-model", "model: openai/other-model")
    new = load_config(path).snapshot()
    assert new["judges"]["correctness"]["effective"] == old["judges"]["correctness"]["effective"]
    assert config_diff(old, new) == ['model: "openai/fake-model" → "openai/other-model"']
    # the judge's own model, api_base and params are identity too
    for before, after, line in [
        ("model: openai/judge-a", "model: openai/judge-b", 'judges.correctness.model: "openai/judge-a" → "openai/judge-b"'),
        ("'http://127.0.0.1:8/v1'", "'http://127.0.0.1:7/v1'",
         'judges.correctness.api_base: "http://127.0.0.1:8/v1" → "http://127.0.0.1:7/v1"'),
        ("api_base: 'http://127.0.0.1:7/v1'}", "api_base: 'http://127.0.0.1:7/v1', params: {temperature: 0.5}}",
         "judges.correctness.params.temperature: 0.0 → 0.5"),
    ]:
        snap = load_config(path).snapshot()
        edit(path, before, after)
        changed = load_config(path).snapshot()
        assert fingerprint(changed, "c") != fingerprint(snap, "c")
        assert config_diff(snap, changed) == [line]


def test_the_judge_template_is_part_of_the_identity(make_project):
    path = with_judge(make_project, "http://127.0.0.1:9/v1", "{template_file: judge.j2}")
    template = path.parent / "judge.j2"
    template.write_text("Grade {{ answer }} against {{ references }}.\nGRADE: X\n")
    old = load_config(path).snapshot()
    sha_old = hashlib.sha256(template.read_bytes()).hexdigest()
    assert old["judges"]["correctness"]["effective"]["template_sha256"] == sha_old
    template.write_text("Grade strictly: {{ answer }} against {{ references }}.\nGRADE: X\n")
    new = load_config(path).snapshot()
    sha_new = hashlib.sha256(template.read_bytes()).hexdigest()
    assert fingerprint(new, "c") != fingerprint(old, "c")
    assert config_diff(old, new) == [f'judges.correctness.template_sha256: "{sha_old[:12]}" → "{sha_new[:12]}"']
    # an unreadable template file is a load-time error (exit 2 before any call), naming the key
    template.unlink()
    with pytest.raises(ConfigError) as ei:
        load_config(path)
    assert ei.value.key == "judges.correctness.template_file"


def test_judge_metric_info_names_what_graded(make_project):
    with FakeOpenAI(reply=Both()) as srv:
        cfg = load_config(with_judge(make_project, srv.url))
        rec = run_eval(cfg)
        info = rec.metrics["correctness"].info
        assert (info["model"], info["api_base"], info["template_sha256"]) == ("openai/fake-model", srv.url, packaged_sha())
        # a pinned judge with its own template
        path = with_judge(make_project, srv.url, "{model: openai/judge-model, api_base: '%s', template_file: j.j2}" % srv.url)
        (path.parent / "j.j2").write_text("Question: {{ input }}\n{{ answer }} / {{ references }}\nGRADE: X\n")
        rec = run_eval(load_config(path))
    info = rec.metrics["correctness"].info
    assert info["model"] == "openai/judge-model" and info["api_base"] == srv.url
    assert info["template_sha256"] == hashlib.sha256((path.parent / "j.j2").read_bytes()).hexdigest()
    assert {b["model"] for b in judge_requests(srv)[-N:]} == {"judge-model"}  # the judge really was that model
    assert rec.as_baseline().metrics["correctness"].info == info  # the baseline keeps it


def test_gating_against_a_baseline_judged_by_another_model_is_refused(make_project, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with FakeOpenAI(reply=Both()) as srv:
        path = with_judge(make_project, srv.url)
        assert run_cli("eval", path, "--update-baseline").exit_code == 0
        baseline = load_record(path.parent / "baseline.json")
        assert baseline.metrics["correctness"].info["model"] == "openai/fake-model"
        # the model under test changes, and with it the judge that follows it
        edit(path, "model: openai/fake-model", "model: openai/other-model")
        srv.reset()
        res = run_cli("eval", path)
        assert res.exit_code == 2, res.output
        assert srv.request_count == 0  # refused before any model call
        assert "metrics.correctness" in res.stderr and "openai/fake-model" in res.stderr
        assert "openai/other-model" in res.stderr and "--allow-judge-change" in res.stderr
        # knowingly allowed
        res = run_cli("eval", path, "--allow-judge-change")
        assert res.exit_code == 0, res.output
        assert "correctness: judge changed openai/fake-model → openai/other-model" in res.output
        assert len(judge_requests(srv)) == N and {b["model"] for b in judge_requests(srv)} == {"other-model"}


def test_score_refuses_and_allows_a_judge_change_too(make_project, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({q["id"]: ANSWERS[q["question"]] for q in QUESTIONS}))
    with FakeOpenAI(reply=Both()) as srv:
        path = with_judge(make_project, srv.url, "{model: openai/judge-a, api_base: '%s'}" % srv.url)
        assert run_cli("score", path, "--outputs", outputs, "--update-baseline").exit_code == 0
        edit(path, "model: openai/judge-a", "model: openai/judge-b")
        srv.reset()
        res = run_cli("score", path, "--outputs", outputs)
        assert res.exit_code == 2 and "openai/judge-a" in res.stderr and "openai/judge-b" in res.stderr
        assert srv.request_count == 0
        res = run_cli("score", path, "--outputs", outputs, "--allow-judge-change")
        assert res.exit_code == 0, res.output
        assert {b["model"] for b in srv.requests} == {"judge-b"}


def test_check_judges(make_project):
    with FakeOpenAI(reply=Both()) as srv:
        path = with_judge(make_project, srv.url)
        baseline = run_eval(load_config(path)).as_baseline()
    cfg = load_config(path)
    assert check_judges(baseline, cfg, "b.json") == []  # same judge
    edit(path, "model: openai/fake-model", "model: openai/other-model")
    cfg = load_config(path)
    with pytest.raises(BaselineError) as ei:
        check_judges(baseline, cfg, "b.json")
    assert ei.value.key == "metrics.correctness" and ei.value.exit_code == 2
    assert "openai/fake-model" in str(ei.value) and "openai/other-model" in str(ei.value)
    assert check_judges(baseline, cfg, "b.json", allow=True) == ["correctness: judge changed openai/fake-model → openai/other-model"]
    # a judge the gate does not compare (the rules name other metrics) is not refused
    edit(path, "    correctness: {max_drop: 0.1}\n", "")
    assert check_judges(baseline, load_config(path), "b.json") == []


# == B. served-model drift ===============================================================

def test_each_call_records_what_served_it(make_project):
    with FakeOpenAI(reply=Both(), served_model="gpt-4o-2024-08-06", system_fingerprint="fp_one") as srv:
        rec = run_eval(load_config(with_judge(make_project, srv.url)))
    for case in rec.cases:
        (call,) = case.calls
        # LiteLLM's response.model is what the server returned, not the requested "openai/fake-model"
        assert call.response["model"] == call.served_model == "gpt-4o-2024-08-06"
        assert call.response["system_fingerprint"] == call.system_fingerprint == "fp_one"
        (sample,) = case.judges["correctness"][0].samples
        assert (sample.served_model, sample.system_fingerprint) == ("gpt-4o-2024-08-06", "fp_one")
    assert rec.served == {"openai/fake-model": {"gpt-4o-2024-08-06 (fp_one)": N}}
    assert rec.judge_served == {"openai/fake-model": {"gpt-4o-2024-08-06 (fp_one)": N}}


def test_default_server_echoes_the_model_and_a_missing_fingerprint_is_a_dash(make_project):
    with FakeOpenAI(reply=Both(), system_fingerprint=None) as srv:
        rec = run_eval(load_config(make_project(srv.url)))
    assert all(c.calls[0].served_model == "fake-model" and c.calls[0].system_fingerprint is None for c in rec.cases)
    assert all("system_fingerprint" not in c.calls[0].response or c.calls[0].response["system_fingerprint"] is None
               for c in rec.cases)
    assert rec.served == {"openai/fake-model": {"fake-model (-)": N}} and rec.judge_served == {}


def test_a_judge_is_summed_apart_under_its_own_requested_model(make_project):
    with FakeOpenAI(reply=Both()) as srv:
        path = with_judge(make_project, srv.url, "{model: openai/judge-model, api_base: '%s', samples: 2}" % srv.url)
        rec = run_eval(load_config(path))
    assert rec.served == {"openai/fake-model": {"fake-model (fp_fake)": N}}
    assert rec.judge_served == {"openai/judge-model": {"judge-model (fp_fake)": 2 * N}}


def test_failed_calls_are_not_counted_as_served(make_project):
    def reply(messages, body):
        return (400, "no") if "national anthem?" in messages[-1]["content"] else Both()(messages, body)

    with FakeOpenAI(reply=reply) as srv:
        rec = run_eval(load_config(make_project(srv.url, max_error_share=0.5)), retries=0)
    assert rec.served == {"openai/fake-model": {"fake-model (fp_fake)": N - 1}}
    assert rec.case_map()["q5"].calls[0].served_model is None


def test_a_cached_answer_reports_what_served_it_and_refresh_asks_again(make_project, tmp_path):
    cache_dir = tmp_path / "cache"
    with FakeOpenAI(reply=Both(), served_model="model-v1", system_fingerprint="fp_1") as srv:
        cfg = load_config(with_judge(make_project, srv.url))
        first = run_eval(cfg, cache=Cache(cache_dir))
        assert srv.request_count == 2 * N
        # the provider silently swaps the model behind the name
        srv.served_model, srv.system_fingerprint = "model-v2", "fp_2"
        srv.reset()
        cached = run_eval(cfg, cache=Cache(cache_dir))
        assert srv.request_count == 0
        assert cached.served == first.served == {"openai/fake-model": {"model-v1 (fp_1)": N}}
        assert cached.judge_served == {"openai/fake-model": {"model-v1 (fp_1)": N}}
        assert all(c.calls[0].cached and c.calls[0].served_model == "model-v1" for c in cached.cases)
        # --refresh: every case and every judge call goes to the server again ...
        refreshed = run_eval(cfg, cache=Cache(cache_dir), refresh=True)
        assert len(model_requests(srv)) == N and len(judge_requests(srv)) == N
        assert refreshed.usage.calls == N and refreshed.usage.cache_hits == 0 and refreshed.judge_usage.calls == N
        assert refreshed.served == {"openai/fake-model": {"model-v2 (fp_2)": N}}
        # ... and its answers are written: the next normal run is fully cached, and reports the new model
        srv.reset()
        after = run_eval(cfg, cache=Cache(cache_dir))
        assert srv.request_count == 0 and after.usage.cache_hits == N and after.judge_usage.cache_hits == N
        assert after.served == after.judge_served == {"openai/fake-model": {"model-v2 (fp_2)": N}}


def test_an_answer_cached_before_served_model_was_kept_still_reports_it(make_project, tmp_path):
    cache = Cache(tmp_path / "cache")
    with FakeOpenAI(reply=Both(), served_model="old-entry-model") as srv:
        cfg = load_config(make_project(srv.url))
        run_eval(cfg, cache=cache)
    # strip the new fields from every entry, as a cache written by an older llmops holds them
    db = cache._db()
    for key, value in db.execute("SELECT key, value FROM responses").fetchall():
        v = json.loads(value)
        del v["served_model"], v["system_fingerprint"]
        db.execute("UPDATE responses SET value = ? WHERE key = ?", (json.dumps(v), key))
    rec = run_eval(cfg, cache=cache)  # the server is stopped: every answer must come from the cache
    assert rec.usage.cache_hits == N
    assert rec.served == {"openai/fake-model": {"old-entry-model (fp_fake)": N}}


def test_cli_refresh_then_fully_cached_and_the_baseline_keeps_the_summaries(make_project, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with FakeOpenAI(reply=Both(), served_model="model-v1") as srv:
        path = with_judge(make_project, srv.url)
        assert run_cli("eval", path, "--update-baseline").exit_code == 0
        base = json.loads((path.parent / "baseline.json").read_text())
        assert base["kind"] == "baseline"
        assert base["served"] == {"openai/fake-model": {"model-v1 (fp_fake)": N}}
        assert base["judge_served"] == {"openai/fake-model": {"model-v1 (fp_fake)": N}}
        assert base["environment"]["llmops-cli"] == metadata.version("llmops-cli")
        srv.served_model = "model-v2"
        srv.reset()
        res = run_cli("eval", path, "--refresh", "-o", tmp_path / "refreshed.json")
        assert res.exit_code == 0, res.output
        assert len(model_requests(srv)) == N and len(judge_requests(srv)) == N
        assert load_record(tmp_path / "refreshed.json").served == {"openai/fake-model": {"model-v2 (fp_fake)": N}}
        srv.reset()
        res = run_cli("eval", path, "-o", tmp_path / "cached.json")
        assert res.exit_code == 0 and srv.request_count == 0
        # `baseline update --refresh` asks again too, and its baseline names the server's model now
        srv.served_model = "model-v3"
        assert run_cli("baseline", "update", path, "--refresh").exit_code == 0
        assert len(model_requests(srv)) == N and len(judge_requests(srv)) == N
        assert load_record(path.parent / "baseline.json").served == {"openai/fake-model": {"model-v3 (fp_fake)": N}}


def test_fake_server_options(make_project):
    import urllib.request

    def post(url, model="fake-model"):
        req = urllib.request.Request(url + "/chat/completions", method="POST", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode())
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    with FakeOpenAI() as srv:
        a = post(srv.url, "asked-for")
        srv.served_model, srv.system_fingerprint = "switched", None
        b = post(srv.url, "asked-for")
    assert (a["model"], a["system_fingerprint"]) == ("asked-for", "fp_fake")
    assert b["model"] == "switched" and "system_fingerprint" not in b


# == C. identity and soundness ================================================================

@pytest.mark.parametrize("where, key", [
    ("user", "prompt.user"), ("system", "prompt.system"), ("user_file", "prompt.user_file"), ("system_file", "prompt.system_file"),
])
def test_a_prompt_template_cannot_see_the_references(make_project, tmp_path, monkeypatch, where, key):
    template = "Question: {{ question }}{% for r in references %} hint: {{ r }}{% endfor %}"
    with FakeOpenAI() as srv:
        path = make_project(srv.url)
        text = path.read_text()
        if where == "user":
            text = text.replace('Question: {{ question }}"', 'Question: {{ question }} ({{ references | join(\', \') }})"')
        elif where == "system":
            text = text.replace('system: "Answer briefly."', 'system: "Answer briefly. The answer is {{ references[0] }}."')
        else:
            (path.parent / "t.j2").write_text(template)
            part = where.removesuffix("_file")
            import re

            text = re.sub(rf"^  {part}: .*$", f"  {where}: t.j2", text, flags=re.M)
        path.write_text(text)
        with pytest.raises(ConfigError) as ei:
            load_config(path)
        assert ei.value.key == key and "references" in str(ei.value) and ei.value.exit_code == 2
        monkeypatch.chdir(tmp_path)
        res = run_cli("eval", path, "--update-baseline")
        assert res.exit_code == 2 and key in res.stderr
        assert srv.request_count == 0


def test_a_variable_the_template_sets_itself_is_not_the_references(make_project):
    path = make_project()
    edit(path, 'Question: {{ question }}"', '{% set references = 1 %}Question: {{ question }}"')
    load_config(path)  # set inside the template: it reads nothing from the case


def test_a_reference_field_cannot_be_an_input(make_project):
    path = make_project()
    edit(path, "inputs: [question]", "inputs: [question, answers]")
    with pytest.raises(ConfigError) as ei:
        load_config(path)
    assert ei.value.key == "dataset.inputs" and "answers" in str(ei.value)


def test_the_runner_no_longer_passes_references_to_the_model_templates(make_project):
    cfg = load_config(make_project())
    cfg._user_text = "{{ references }}"  # past the load-time check, as a library user could
    with pytest.raises(ConfigError) as ei:
        make_plan(cfg)
    assert ei.value.key == "prompt.user" and "'references' is undefined" in str(ei.value)
    assert "references" not in str(ei.value).split("available:")[1]


def test_judges_still_get_the_references(make_project):
    with FakeOpenAI(reply=Both()) as srv:
        run_eval(load_config(with_judge(make_project, srv.url)))
    for body in judge_requests(srv):
        question = body["messages"][-1]["content"].split("Question: ", 1)[1].splitlines()[0]
        refs = next(q["answers"] for q in QUESTIONS if q["question"] == question)
        assert all(f"- {r}" in body["messages"][-1]["content"] for r in refs)
    for body in model_requests(srv):
        assert "Reference" not in json.dumps(body["messages"])


def test_memoised_scores_are_keyed_by_the_scoring_libraries(make_project, tmp_path, monkeypatch):
    versions = scorer_versions()
    assert versions[0] == scoring.SCORER_VERSION
    assert versions[1:] == tuple(f"{n}=={metadata.version(n)}" for n in ("sacrebleu", "rouge-score", "nltk"))
    cache = Cache(tmp_path / "cache")
    with FakeOpenAI(reply=Both()) as srv:
        cfg = load_config(make_project(srv.url))
        first = run_eval(cfg, cache=cache)
        assert cache.info()["memo"]["bleu"] == 1
        run_eval(cfg, cache=cache)
        assert cache.info()["memo"]["bleu"] == 1  # same versions: reused
        real = metadata.version
        monkeypatch.setattr(metadata, "version", lambda name: "9.9.9" if name == "sacrebleu" else real(name))
        scorer_versions.cache_clear()
        try:
            again = run_eval(cfg, cache=cache)
        finally:
            scorer_versions.cache_clear()
    memo = cache.info()["memo"]
    assert memo["bleu"] == 2 and memo["rougeL"] == 2 and memo["token_f1"] == 2  # every metric recomputed
    assert again.metrics["bleu"].aggregate == first.metrics["bleu"].aggregate


def test_a_fully_cached_run_imports_no_scoring_library(make_project, tmp_path):
    with FakeOpenAI(reply=Both()) as srv:
        path = make_project(srv.url)
        env_cmd = [sys.executable, "-m", "llmops_cli.cli", "eval", str(path)]
        assert subprocess.run(env_cmd + ["--update-baseline"], capture_output=True, cwd=path.parent, timeout=120).returncode == 0
        assert subprocess.run(env_cmd, capture_output=True, cwd=path.parent, timeout=120).returncode == 0  # memoises the gate
    res = run_in_fresh_process(["eval", path, "-o", "run.json"],
                               ("sacrebleu", "rouge_score", "nltk", "litellm", "bm25s", "numpy"), path.parent)
    assert "EXIT 0" in res.stdout and "LOADED []" in res.stdout, res.stdout + res.stderr
    rec = load_record(path.parent / "run.json")
    assert rec.usage.cache_hits == N and rec.environment["sacrebleu"] == metadata.version("sacrebleu")


def test_the_fingerprint_ignores_the_timeout_and_the_corpus_path(make_project):
    path = make_project()
    fp = fingerprint(load_config(path).snapshot(), "corpus-content")
    old = load_config(path).snapshot()
    edit(path, "timeout: 10", "timeout: 99")
    (path.parent / "corpus.jsonl").rename(path.parent / "documents.jsonl")
    edit(path, "corpus: corpus.jsonl", "corpus: documents.jsonl")
    new = load_config(path).snapshot()
    assert fingerprint(new, "corpus-content") == fp
    assert fingerprint(new, "other-content") != fp  # the corpus content still counts
    assert config_diff(old, new) == ["params.timeout: 10.0 → 99.0", 'retrieval.corpus: "corpus.jsonl" → "documents.jsonl"']
    # a judge's timeout does not count either; its other params do
    path = with_judge(make_project, "http://127.0.0.1:9/v1", "{params: {timeout: 30}}")
    fp = fingerprint(load_config(path).snapshot())
    edit(path, "timeout: 30}", "timeout: 300}")
    assert fingerprint(load_config(path).snapshot()) == fp
    edit(path, "timeout: 300}", "timeout: 300, max_tokens: 100}")
    assert fingerprint(load_config(path).snapshot()) != fp


def test_a_timeout_change_keeps_the_fingerprint_of_a_real_run(make_project, tmp_path):
    cache = Cache(tmp_path / "cache")
    with FakeOpenAI(reply=Both()) as srv:
        path = make_project(srv.url)
        a = run_eval(load_config(path), cache=cache)
        edit(path, "timeout: 10", "timeout: 20")
        srv.reset()
        b = run_eval(load_config(path), cache=cache)
    assert a.fingerprint == b.fingerprint
    assert srv.request_count == 0 and b.usage.cache_hits == N  # nor is the timeout part of the cache key


def test_the_record_holds_the_library_versions(make_project):
    with FakeOpenAI(reply=Both()) as srv:
        rec = run_eval(load_config(make_project(srv.url)))
    env = rec.environment
    for name in ("llmops-cli", "litellm", "bm25s", "sacrebleu", "rouge-score", "nltk"):
        assert env[name] == metadata.version(name), name
    try:
        assert env["llama-cpp-python"] == metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        assert "llama-cpp-python" not in env
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert rec.as_baseline().environment == env


def test_environment_changes():
    old = {"python": "3.11.7", "sacrebleu": "2.5.1", "litellm": "1.106.2", "llama-cpp-python": "0.3.16"}
    new = {"python": "3.11.7", "sacrebleu": "2.6.0", "litellm": "1.106.2", "bm25s": "0.2.14"}
    assert environment_changes(old, new) == ["bm25s: — → 0.2.14", "llama-cpp-python: 0.3.16 → —", "sacrebleu: 2.5.1 → 2.6.0"]
    assert environment_changes(old, old) == []
    assert environment_changes({}, new) == []  # a record made before versions were kept: unknown, not changed


# -- every command that writes a baseline applies the same checks ------------------------------

def test_baseline_update_refuses_a_run_with_too_many_unscored_verdicts(make_project, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    both = Both()
    with FakeOpenAI(reply=both) as srv:
        path = with_judge(make_project, srv.url)
        assert run_cli("baseline", "update", path).exit_code == 0
        before = (path.parent / "baseline.json").read_bytes()
        both.verdicts = False
        res = run_cli("baseline", "update", path, "--no-cache", "-o", tmp_path / "bad.json")
    assert res.exit_code == 3, res.output
    assert "correctness: 6 of 6 cases unscored" in res.stderr and "max_unscored_share" in res.stderr
    assert (path.parent / "baseline.json").read_bytes() == before
    assert load_record(tmp_path / "bad.json").metrics["correctness"].n_unscored == N  # the run record is kept


def test_baseline_update_from_run_applies_the_same_checks(make_project, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    both = Both()
    both.verdicts = False
    with FakeOpenAI(reply=both) as srv:
        path = with_judge(make_project, srv.url, extra="max_unscored_share: 1.0\n")
        # a run allowed (at the time) to leave every verdict unscored
        assert run_cli("eval", path, "--update-baseline", "-o", tmp_path / "unscored.json").exit_code == 0
    (path.parent / "baseline.json").unlink()
    edit(path, "max_unscored_share: 1.0", "max_unscored_share: 0.1")
    res = run_cli("baseline", "update", path, "--from-run", tmp_path / "unscored.json")
    assert res.exit_code == 3 and "unscored" in res.stderr, res.output
    assert not (path.parent / "baseline.json").exists()
    # an incomplete run is refused too (exit 2), whichever command promotes it
    down = FakeOpenAI(down=True).start()
    path2 = make_project(down.url, timeout=1)
    res = run_cli("eval", path2, "--update-baseline", "--retries", "0", "-o", tmp_path / "incomplete.json")
    assert res.exit_code == 3
    assert load_record(tmp_path / "incomplete.json").status == "incomplete"
    res = run_cli("baseline", "update", path2, "--from-run", tmp_path / "incomplete.json")
    assert res.exit_code == 2 and "status 'incomplete'" in res.stderr
    assert not (path2.parent / "baseline.json").exists()


def test_write_baseline_checks_the_unscored_share(make_project, tmp_path):
    both = Both()
    both.verdicts = False
    with FakeOpenAI(reply=both) as srv:
        rec = run_eval(load_config(with_judge(make_project, srv.url)))
    with pytest.raises(RunIncomplete, match="6 of 6 cases unscored") as ei:
        write_baseline(rec, tmp_path / "b.json", max_unscored_share=0.5)
    assert ei.value.exit_code == 3 and not (tmp_path / "b.json").exists()
    write_baseline(rec, tmp_path / "b.json", max_unscored_share=1.0)
    assert load_record(tmp_path / "b.json").kind == "baseline"
