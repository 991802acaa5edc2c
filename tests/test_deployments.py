"""Several deployments of one model through ``litellm.Router`` (config
``deployments:`` and ``fallbacks:``): a dead deployment costs no case, calls
spread over healthy ones, the record names who answered, the deployments
share cached answers, no key is written, and bad configs are exit 2."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from conftest import ANSWERS, PLANTED_KEY
from llmops_cli.core.cache import Cache
from llmops_cli.cli import cli
from llmops_cli.config import ConfigError, load_config, parse_config
from llmops_cli.jobs.config_schema import config_schema
from llmops_cli.core.errors import RunIncomplete
from llmops_cli.core.fingerprint import config_diff, fingerprint
from llmops_cli.jobs.merge import sum_usage
from llmops_cli.record.schema import Usage
from llmops_cli.jobs.runner import run_eval
from llmops_cli.testing import FakeOpenAI

SECOND_KEY = "sk-llmops-test-SECOND-PLANTED-9876543210"
ROOT = Path(__file__).resolve().parent.parent


def answer(messages, body):
    q = messages[-1]["content"].rsplit("Question: ", 1)[-1].strip()
    return ANSWERS.get(q, "I do not know")


def deployments_yaml(*items: dict) -> str:
    """``deployments:`` (and optionally ``fallbacks:``) as YAML flow mappings."""
    return "deployments:\n" + "".join(f"  - {json.dumps(d)}\n" for d in items)


@pytest.fixture
def project(make_project, litellm_loaded):
    """``project(*deployments, extra="")``: the tiny RAG project with the model
    served by these deployments instead of one api_base."""
    def make(*deps: dict, extra: str = "", **kw):
        return make_project("null", extra=deployments_yaml(*deps) + extra, **kw)
    return make


def labels(record) -> list[str | None]:
    return [c.deployment for case in record.cases for c in case.calls]


# -- the done-when: one dead deployment, every case scored ---------------------

@pytest.mark.parametrize("dead", ["refused", "500"])
@pytest.mark.parametrize("limits", [{}, {"rpm": 1000}], ids=["shuffle", "rpm"])
def test_a_dead_deployment_costs_no_case(project, dead, limits):
    bad_kw = {"down": True} if dead == "refused" else {"fail_every": {1: 500}}
    with FakeOpenAI(**bad_kw) as bad, FakeOpenAI(reply=answer) as good:
        cfg = load_config(project({"api_base": bad.url, "name": "dead", **limits},
                                  {"api_base": good.url, "name": "healthy", **limits}, extra="repeats: 3\n"))
        record = run_eval(cfg, cache=None)
    assert record.status == "complete"
    assert all(c.error is None and c.output for case in record.cases for c in case.calls)
    assert all(case.output for case in record.cases)
    assert labels(record) == ["healthy"] * 18  # the dead one never answered; each answer says who did
    assert record.usage.deployments == {"healthy": 18} and record.usage.errors == 0
    assert record.metrics["exact_match"].n_scored == 6
    assert good.request_count == 18


def test_a_failing_deployment_is_cooled_down_and_each_move_is_counted(project):
    with FakeOpenAI(fail_every={1: 500}) as bad, FakeOpenAI(reply=answer) as good:
        cfg = load_config(project({"api_base": bad.url}, {"api_base": good.url}, extra="repeats: 10\n"))
        record = run_eval(cfg, cache=None)
    assert good.request_count == 60 and record.usage.errors == 0
    # at random it would get about 30 of the 60 calls (sd 4); cooled down after its first failures, it gets few
    assert bad.request_count <= 20
    assert record.usage.retries == bad.request_count  # each failure moved its call to the healthy deployment once


def test_every_deployment_dead_is_exit_3_not_a_crash(project):
    with FakeOpenAI(down=True) as a, FakeOpenAI(fail_every={1: 500}) as b:
        cfg = load_config(project({"api_base": a.url}, {"api_base": b.url}))
        with pytest.raises(RunIncomplete) as exc:
            run_eval(cfg, cache=None, retries=0)
    assert "cases failed" in str(exc.value) and "openai/fake-model through 2 deployments" in str(exc.value)
    assert all(c.deployment is None for case in exc.value.record.cases for c in case.calls)


def test_each_router_is_unhooked_from_litellm_after_the_run(project, litellm_loaded):
    # LiteLLM keeps at most 30 callbacks per list: routers left hooked would stop later runs' cooldowns
    with FakeOpenAI(reply=answer) as a:
        for _ in range(3):
            run_eval(load_config(project({"api_base": a.url})), cache=None)
    hooked = [cb for lst in (litellm_loaded.success_callback, litellm_loaded.failure_callback,
                             litellm_loaded._async_success_callback, litellm_loaded._async_failure_callback)
              for cb in lst if isinstance(getattr(cb, "__self__", None), litellm_loaded.Router)]
    assert hooked == []


def test_all_deployments_cooling_down_is_retried_after_the_cooldown():
    from llmops_cli.run.provider import congestion_signal, import_litellm, is_retryable, retry_after_s

    import_litellm()
    from litellm.types.router import RouterRateLimitError

    exc = RouterRateLimitError(model="m", cooldown_time=5, enable_pre_call_checks=False, cooldown_list=["a", "b"])
    assert is_retryable(exc) and retry_after_s(exc) == 5.0 and congestion_signal(exc) == "congestion"


# -- load balancing ----------------------------------------------------------------

def test_two_healthy_deployments_share_the_calls(project):
    with FakeOpenAI(reply=answer) as a, FakeOpenAI(reply=answer) as b:
        cfg = load_config(project({"api_base": a.url}, {"api_base": b.url}, extra="repeats: 5\n"))
        record = run_eval(cfg, cache=None)
        assert a.request_count > 0 and b.request_count > 0  # 30 calls, 50/50: all on one has p = 2^-29
        assert a.request_count + b.request_count == 30
        assert record.usage.deployments == {a.url: a.request_count, b.url: b.request_count}
        assert sorted(set(labels(record))) == sorted([a.url, b.url])
        # only what the provider takes goes over the wire: no rpm, weight, key or router metadata in the body
        assert {k for body in a.requests + b.requests for k in body} == {"model", "messages", "temperature",
                                                                           "max_tokens"}


def test_weight_steers_the_shares(project):
    with FakeOpenAI(reply=answer) as a, FakeOpenAI(reply=answer) as b:
        cfg = load_config(project({"api_base": a.url, "weight": 1000}, {"api_base": b.url, "weight": 0.001},
                                  extra="repeats: 3\n"))
        run_eval(cfg, cache=None)
    assert a.request_count == 18 and b.request_count == 0  # b's share is 1e-6 per call


def test_each_deployment_may_name_another_model_string(project):
    with FakeOpenAI(reply=answer) as a, FakeOpenAI(reply=answer) as b:
        cfg = load_config(project({"api_base": a.url, "name": "east"},
                                  {"api_base": b.url, "model": "openai/fake-model-eu", "name": "west"},
                                  extra="repeats: 4\n"))
        record = run_eval(cfg, cache=None)
    assert {body["model"] for body in a.requests} <= {"fake-model"}
    assert {body["model"] for body in b.requests} <= {"fake-model-eu"}
    served = {(c.deployment, c.served_model) for case in record.cases for c in case.calls}
    assert served <= {("east", "fake-model"), ("west", "fake-model-eu")} and len(served) == 2  # 24 calls, 50/50


# -- the cache: the logical model's answers, shared by every deployment --------------

def test_deployments_share_cached_answers(project, tmp_path):
    cache = Cache(tmp_path / "cache")
    with FakeOpenAI(reply=answer) as a, FakeOpenAI(reply=answer) as b, FakeOpenAI(reply=answer) as c:
        first = run_eval(load_config(project({"api_base": a.url}, {"api_base": b.url})), cache=cache)
        assert a.request_count + b.request_count == 6
        # another order, one removed, one added: the same logical model, so every answer is cached
        second_cfg = load_config(project({"api_base": c.url}, {"api_base": b.url}))
        second = run_eval(second_cfg, cache=cache)
        assert a.request_count + b.request_count == 6 and c.request_count == 0
    assert second.usage.cache_hits == 6 and second.usage.calls == 0 and second.usage.deployments == {}
    assert [case.output for case in second.cases] == [case.output for case in first.cases]
    assert labels(second) == labels(first)  # a cached answer keeps who answered it
    assert second.fingerprint == first.fingerprint  # URLs are not identity; the models are


def test_the_fingerprint_holds_the_models_not_the_urls(project):
    base = load_config(project({"api_base": "http://127.0.0.1:1/v1"}, {"api_base": "http://127.0.0.1:2/v1"}))
    moved = load_config(project({"api_base": "http://127.0.0.1:3/v1", "rpm": 5, "name": "x"},
                                {"api_base": "http://127.0.0.1:2/v1", "weight": 3}))
    other = load_config(project({"api_base": "http://127.0.0.1:1/v1", "model": "azure/gpt-eu"},
                                {"api_base": "http://127.0.0.1:2/v1"}))
    fp = {name: fingerprint(c.snapshot()) for name, c in (("base", base), ("moved", moved), ("other", other))}
    assert fp["base"] == fp["moved"] != fp["other"]
    assert "deployments[0].model: — → \"azure/gpt-eu\"" in config_diff(base.snapshot(), other.snapshot())
    assert any(line.startswith("deployments[0].api_base") for line in config_diff(base.snapshot(), moved.snapshot()))


def test_a_config_without_deployments_keeps_its_fingerprint_and_snapshot():
    cfg = load_config(ROOT / "examples" / "squad-rag" / "llmops.yaml")
    baseline = json.loads(cfg.baseline_path.read_text(encoding="utf-8"))  # committed before deployments existed
    snap = cfg.snapshot()
    assert "deployments" not in snap and "fallbacks" not in snap
    assert fingerprint(snap, baseline["corpus_hash"]) == baseline["fingerprint"]
    assert config_diff(baseline["config"], snap) == []


# -- fallbacks -------------------------------------------------------------------------

def test_a_fallback_answers_when_every_deployment_failed_and_is_not_cached(project, tmp_path):
    cache = Cache(tmp_path / "cache")
    with FakeOpenAI(down=True) as a, FakeOpenAI(fail_every={1: 500}) as b, \
            FakeOpenAI(reply=answer, served_model="backup-1") as fb:
        fallback = {"model": "openai/backup", "api_base": fb.url, "name": "backup"}
        cfg = load_config(project({"api_base": a.url}, {"api_base": b.url},
                                  extra=f"fallbacks: [{json.dumps(fallback)}]\n"))
        record = run_eval(cfg, cache=cache)
        assert labels(record) == ["backup"] * 6 and {body["model"] for body in fb.requests} == {"backup"}
        assert {c.served_model for case in record.cases for c in case.calls} == {"backup-1"}
        again = run_eval(cfg, cache=cache)  # a fallback's answer is not the logical model's: asked again
        assert again.usage.cache_hits == 0 and fb.request_count == 12
    assert fingerprint(cfg.snapshot()) != fingerprint(load_config(project({"api_base": a.url})).snapshot())


# -- judges follow the model under test to its deployments -------------------------------

def test_a_judge_without_its_own_model_goes_through_the_deployments(project):
    def judge_or_answer(messages, body):
        return "GRADE: C" if "GRADE" in messages[0]["content"] + messages[-1]["content"] else answer(messages, body)

    with FakeOpenAI(down=True) as bad, FakeOpenAI(reply=judge_or_answer) as good:
        cfg = load_config(project({"api_base": bad.url}, {"api_base": good.url, "name": "ok"},
                                  extra="judges:\n  correctness: {type: correctness}\n"))
        record = run_eval(cfg, cache=None)
    assert record.metrics["correctness"].n_scored == 6
    assert record.judge_usage.deployments == {"ok": 6}


# -- secrets -------------------------------------------------------------------------------

def test_no_key_is_written_and_each_deployment_sends_its_own(project, tmp_path, monkeypatch):
    monkeypatch.setenv("SECOND_KEY", SECOND_KEY)
    monkeypatch.chdir(tmp_path)
    with FakeOpenAI(reply=answer) as a, FakeOpenAI(reply=answer) as b:
        # a's key is the top-level api_key_env (the default); b's its own, which the default must not override
        cfg = project({"api_base": a.url}, {"api_base": b.url, "api_key_env": "SECOND_KEY"},
                      extra="repeats: 5\napi_key_env: OPENAI_API_KEY\n")
        out = tmp_path / "run.json"
        res = CliRunner().invoke(cli, ["eval", str(cfg), "--update-baseline", "-o", str(out),
                                       "--cache-dir", str(tmp_path / "c")], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        assert {h.get("Authorization") for h in a.headers} == {f"Bearer {PLANTED_KEY}"}
        assert {h.get("Authorization") for h in b.headers} == {f"Bearer {SECOND_KEY}"}
    assert "answered by" in res.output
    written = [out, cfg.parent / "baseline.json", *(tmp_path / "c").rglob("*")]
    for path in [p for p in written if p.is_file()]:
        data = path.read_bytes()
        assert PLANTED_KEY.encode() not in data and SECOND_KEY.encode() not in data, path
    assert PLANTED_KEY not in res.output and SECOND_KEY not in res.output


def test_a_missing_deployment_key_is_exit_2_before_any_call(project, monkeypatch):
    monkeypatch.delenv("NOT_SET_KEY", raising=False)
    with FakeOpenAI() as a:
        cfg = project({"api_base": a.url}, {"api_base": a.url.replace("/v1", "/v2"), "api_key_env": "NOT_SET_KEY"})
        res = CliRunner().invoke(cli, ["eval", str(cfg), "--update-baseline"])
        assert a.request_count == 0
    assert res.exit_code == 2
    assert "deployments[1].api_key_env" in res.output and "NOT_SET_KEY is not set" in res.output


# -- bad configs: exit 2, one line; the schema agrees --------------------------------------

BASE = {"model": "openai/gpt-4o-mini", "prompt": {"user": "{{ question }}"}, "dataset": {"path": "q.jsonl"}}
A, B = {"api_base": "http://127.0.0.1:8001/v1"}, {"api_base": "http://127.0.0.1:8002/v1"}

REJECTED = {
    "api_base and deployments": ({"api_base": "http://127.0.0.1:8000/v1", "deployments": [A, B]}, "api_base"),
    "empty deployments": ({"deployments": []}, "deployments"),
    "ftp deployment": ({"deployments": [{"api_base": "ftp://127.0.0.1/v1"}]}, "deployments.0.api_base"),
    "deployment without a scheme": ({"deployments": [{"api_base": "127.0.0.1:8000"}]}, "deployments.0.api_base"),
    "password in a deployment url": ({"deployments": [A, {"api_base": "http://u:pw-secret@h/v1"}]},
                                     "deployments.1.api_base"),
    "fallbacks without deployments": ({"fallbacks": ["openai/gpt-4o"]}, "fallbacks"),
    "local model as a deployment": ({"deployments": [A, {"model": "local/smollm2-135m"}]}, "deployments[1].model"),
    "local model with deployments": ({"model": "local/smollm2-135m", "deployments": [A]}, "deployments"),
    "two deployments, one label": ({"deployments": [A, dict(A)]}, "deployments[1]"),
    "rpm 0": ({"deployments": [{**A, "rpm": 0}]}, "deployments.0.rpm"),
    "negative weight": ({"deployments": [{**A, "weight": -1}]}, "deployments.0.weight"),
    "unknown deployment key": ({"deployments": [{**A, "api_key": "sk-x"}]}, "deployments.0.api_key"),
}


@pytest.fixture(scope="module")
def validator():
    return jsonschema.Draft202012Validator(config_schema())


@pytest.mark.parametrize("changes,key", REJECTED.values(), ids=REJECTED.keys())
def test_bad_deployment_configs_are_refused_by_loader_and_schema(changes, key, validator):
    data = {**copy.deepcopy(BASE), **copy.deepcopy(changes)}
    with pytest.raises(ConfigError) as exc:
        parse_config(copy.deepcopy(data))
    assert exc.value.key == key, str(exc.value)
    assert "pw-secret" not in str(exc.value) and "\n" not in str(exc.value)
    if key not in ("deployments[1]", "deployments[1].model", "deployments"):  # what JSON Schema cannot say
        assert not validator.is_valid(data)


ACCEPTED = {
    "two deployments": {"deployments": [A, B]},
    "deployments with limits and names": {"deployments": [{**A, "rpm": 60, "tpm": 100000, "name": "eu"},
                                                          {**B, "weight": 2, "model": "azure/gpt-4o-eu"}]},
    "a key for all": {"api_key_env": "PROXY_KEY", "deployments": [A, B]},
    "fallback strings and mappings": {"deployments": [A], "fallbacks": ["openai/gpt-4o",
                                                                       {"model": "openai/x", **B}]},
    "api_base null beside deployments": {"api_base": None, "deployments": [A]},
}


@pytest.mark.parametrize("changes", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_good_deployment_configs_pass_loader_and_schema(changes, validator):
    data = {**copy.deepcopy(BASE), **copy.deepcopy(changes)}
    parse_config(copy.deepcopy(data))
    assert not [e.message for e in validator.iter_errors(data)]


def test_bad_configs_are_exit_2_through_the_cli(project):
    for deps, extra in (((A, B), "api_base: http://127.0.0.1:8000/v1\n"), ((), ""),
                        (({"api_base": "file:///etc/passwd"},), "")):
        cfg = project(*deps, extra=extra) if deps else project(extra="")
        if not deps:
            cfg.write_text(cfg.read_text().replace("deployments:\n", "deployments: []\n"))
        else:
            cfg.write_text(cfg.read_text().replace("api_base: null\n", ""))
        res = CliRunner().invoke(cli, ["validate", str(cfg)])
        assert res.exit_code == 2, res.output
        assert len(res.output.strip().splitlines()) == 1 and str(cfg.name) in res.output


# -- merging shard records sums the answers per deployment ----------------------------------

def test_merged_usage_sums_the_answers_per_deployment():
    merged = sum_usage([Usage(deployments={"a": 2, "b": 1}), Usage(deployments={"b": 4}), Usage()])
    assert merged.deployments == {"a": 2, "b": 5}


def test_an_unknown_price_stays_unknown_through_the_router(make_project, litellm_loaded):
    """LiteLLM's Router registers its deployments' models in the price map with
    no price, after which LiteLLM would price their calls at 0 USD: an unknown
    price must leave cost_usd unscored, during the run and after it."""
    with FakeOpenAI(reply=lambda m, b: "x") as a, FakeOpenAI(reply=lambda m, b: "x") as b:
        cfg = make_project(a.url)
        text = cfg.read_text().replace(f"api_base: {a.url}\n", f"deployments: [{{api_base: '{a.url}'}}, {{api_base: '{b.url}'}}]\n")
        cfg.write_text(text.replace("metrics: [exact_match, token_f1, bleu, rougeL]", "metrics: [token_f1, cost_usd]"))
        rec = run_eval(load_config(cfg), cache=None)
    assert rec.metrics["cost_usd"].aggregate is None and rec.usage.cost_usd is None
    import litellm

    assert "openai/fake-model" not in litellm.model_cost
