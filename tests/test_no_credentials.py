"""No credential in any URL, file or log (issue 21, item 1).

Every ``api_base`` the config takes (the model's, a judge's, the
embedding's, a deployment's, a fallback's) refuses a user/password and a
credential-looking query or fragment parameter at load time: exit 2, one
line naming the file and the key and pointing to ``api_key_env``, no model
called, nothing written, the secret shown nowhere. A run whose keys come
from the environment writes none of them into any file it writes (record,
baseline, HTML, Markdown, comment, JUnit, JSON, job summary, cache) nor to
stdout/stderr; a Redis ``cache.url`` password is redacted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from llmops_cli.cli import cli
from llmops_cli.config import parse_config
from llmops_cli.testing import FakeOpenAI
from llmops_cli.core.urls import credential_free_url, is_credential_name

from conftest import ANSWERS, PLANTED_KEY, QUESTIONS, write_jsonl

SECRET = "S3CR3T-url-PLANTED-4242"
JUDGE_KEY, EMBED_KEY, REDIS_PW = "sk-judge-PLANTED-1111", "sk-embed-PLANTED-2222", "redis-PLANTED-3333"
ALL_SECRETS = (SECRET, PLANTED_KEY, JUDGE_KEY, EMBED_KEY, REDIS_PW)


def _answer(messages, body):
    return ANSWERS.get(messages[-1]["content"].rsplit("Question: ", 1)[-1], "I do not know")


def _project(folder: Path, **changes) -> Path:
    """A small config (model under test at a dead port unless changed) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "questions.jsonl", QUESTIONS)
    data = {"model": "openai/fake-model", "api_base": "http://127.0.0.1:9/v1", "api_key_env": "OPENAI_API_KEY",
            "params": {"temperature": 0, "max_tokens": 32, "timeout": 10},
            "prompt": {"user": "Question: {{ question }}"},
            "dataset": {"path": "questions.jsonl", "inputs": ["question"], "references": "answers"},
            "metrics": ["exact_match", "token_f1"], "gate": {"metrics": {"token_f1": {"max_drop": 0.05}}}}
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path = folder / "llmops.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _files_holding(root: Path, secrets, skip=()) -> list[str]:
    found = []
    for p in root.rglob("*"):
        if p.is_file() and p not in skip:
            data = p.read_bytes()
            found += [f"{p}: {s}" for s in secrets if s.encode() in data]
    return found


# -- the rule ----------------------------------------------------------------------------------

CREDENTIAL_URLS = {
    "user and password": f"http://alice:{SECRET}@127.0.0.1:8817/v1",
    "user alone": f"http://{SECRET}@127.0.0.1:8817/v1",
    "api-key": f"http://127.0.0.1:8817/v1?api-key={SECRET}",
    "api_key": f"http://127.0.0.1:8817/v1?x=1&api_key={SECRET}",
    "key": f"https://example.com/v1?key={SECRET}",
    "Token (case)": f"http://127.0.0.1:8817/v1?Token={SECRET}",
    "access_token": f"http://127.0.0.1:8817/v1?access_token={SECRET}",
    "password": f"http://127.0.0.1:8817/v1?password={SECRET}",
    "secret": f"http://127.0.0.1:8817/v1?client_secret={SECRET}",
    "sig": f"https://acct.blob.core.windows.net/v1?sv=2024&sig={SECRET}",
    "signature": f"http://127.0.0.1:8817/v1?X-Amz-Signature={SECRET}",
    "apiKey (camel case)": f"http://127.0.0.1:8817/v1?apiKey={SECRET}",
    "subscription-key": f"http://127.0.0.1:8817/v1?subscription-key={SECRET}",
    "in the fragment": f"http://127.0.0.1:8817/v1#access_token={SECRET}",
}


@pytest.mark.parametrize("url", CREDENTIAL_URLS.values(), ids=CREDENTIAL_URLS.keys())
def test_a_credential_in_a_url_is_refused_without_showing_it(url):
    with pytest.raises(ValueError) as exc:
        credential_free_url(url)
    assert SECRET not in str(exc.value) and "api_key_env" in str(exc.value)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/v1", "https://acme.openai.azure.com/openai?api-version=2024-06-01",
                                 "http://proxy.internal:4000/v1?deployment=eu&region=west#frag",
                                 "HTTPS://Example.com/v1/"])
def test_a_url_without_a_credential_is_kept_exactly(url):
    assert credential_free_url(url) == url
    cfg = parse_config(yaml.safe_load(_project_text(url)))
    assert cfg.api_base == url and cfg.snapshot()["api_base"] == url


def _project_text(api_base: str) -> str:
    return yaml.safe_dump({"model": "openai/m", "api_base": api_base, "prompt": {"user": "{{ q }}"},
                           "dataset": {"path": "q.jsonl"}})


def test_which_parameter_names_look_like_credentials():
    for name in ("key", "api_key", "api-key", "API-KEY", "apikey", "token", "access_token", "password", "passwd",
                 "secret", "client_secret", "sig", "signature", "X-Amz-Security-Token", "subscription-key", "code",
                 "auth", "apiKey", "accessToken"):
        assert is_credential_name(name), name
    for name in ("api-version", "deployment", "model", "region", "x", "format", "version"):
        assert not is_credential_name(name), name


# -- every api_base of the config: exit 2 naming file and key, nothing called or written --------

PLACES = {
    "model": (lambda url: {"api_base": url}, "api_base"),
    "judge": (lambda url: {"judges": {"grader": {"type": "correctness", "model": "openai/judge", "api_base": url}}},
              "judges.grader.api_base"),
    "embedding": (lambda url: {"metrics": ["exact_match", "semantic_similarity"],
                               "embedding": {"model": "openai/embed", "api_base": url}}, "embedding.api_base"),
    "deployment": (lambda url: {"api_base": None, "deployments": [{"api_base": "http://127.0.0.1:9/v1", "name": "a"},
                                                                  {"api_base": url, "name": "b"}]},
                   "deployments.1.api_base"),
    "fallback": (lambda url: {"api_base": None, "deployments": [{"api_base": "http://127.0.0.1:9/v1"}],
                              "fallbacks": [{"model": "openai/other", "api_base": url}]}, "fallbacks.0.api_base"),
}
FORMS = ["user and password", "api-key", "Token (case)", "sig", "in the fragment"]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("place", PLACES)
def test_a_planted_url_credential_is_exit_2_naming_file_and_key(place, form, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    changes, key = PLACES[place]
    with FakeOpenAI() as srv:
        url = CREDENTIAL_URLS[form].replace("127.0.0.1:8817", f"127.0.0.1:{srv.port}")
        cfg = _project(tmp_path / "p", **changes(url))
        out = tmp_path / "out"
        res = CliRunner().invoke(cli, ["eval", str(cfg), "--update-baseline", "-o", str(out / "run.json"),
                                       "--html", str(out / "r.html"), "--markdown", str(out / "s.md"),
                                       "--comment", str(out / "c.md"), "--junit", str(out / "j.xml"),
                                       "--cache-dir", str(tmp_path / "cache")])
        assert srv.request_count == 0
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1, res.output
    assert str(cfg.name) in lines[0] and key in lines[0] and "api_key_env" in lines[0], lines[0]
    assert SECRET not in res.output
    assert _files_holding(tmp_path, [SECRET], skip={cfg}) == []
    assert not (cfg.parent / "baseline.json").exists() and not (out / "run.json").exists()
    assert "Traceback" not in res.output


def test_validate_and_a_baseline_ref_config_refuse_it_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _project(tmp_path / "p", api_base=CREDENTIAL_URLS["api-key"])
    res = CliRunner().invoke(cli, ["validate", str(cfg)])
    assert res.exit_code == 2 and "api_base" in res.output and SECRET not in res.output


# -- a whole run: keys from the environment appear in no written file and no output ---------------

def test_no_key_in_any_file_a_run_writes_nor_in_its_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JUDGE_KEY", JUDGE_KEY)
    monkeypatch.setenv("EMBED_KEY", EMBED_KEY)
    summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    with FakeOpenAI(reply=_answer) as model, FakeOpenAI(reply=["Fine.\nGRADE: C"]) as judge, FakeOpenAI() as embed:
        changes = {"api_base": model.url,
                   "metrics": ["exact_match", "token_f1", "semantic_similarity"],
                   "judges": {"grader": {"type": "correctness", "model": "openai/judge", "api_base": judge.url,
                                         "api_key_env": "JUDGE_KEY"}},
                   "embedding": {"model": "openai/embed", "api_base": embed.url, "api_key_env": "EMBED_KEY"}}
        cfg = _project(tmp_path / "p", **changes)
        cache = tmp_path / "cache"
        runner = CliRunner()
        first = runner.invoke(cli, ["eval", str(cfg), "--update-baseline", "--cache-dir", str(cache)])
        assert first.exit_code == 0, first.output
        out = tmp_path / "out"
        args = ["eval", str(cfg), "-o", str(out / "run.json"), "--html", str(out / "r.html"), "--markdown",
                str(out / "s.md"), "--comment", str(out / "c.md"), "--junit", str(out / "j.xml"), "--json",
                "--cache-dir", str(cache), "--refresh"]
        second = runner.invoke(cli, args)
        assert second.exit_code == 0, second.output
        # the same with a Redis cache.url holding a password (unreachable: one warning line, run uncached)
        cfg.write_text(cfg.read_text() + f"cache: {{url: 'redis://:{REDIS_PW}@127.0.0.1:1/0'}}\n")
        third = runner.invoke(cli, [*args[:2], "-o", str(out / "run3.json"), "--comment", str(out / "c3.md")])
        assert third.exit_code == 0, third.output
        sent = {h.get("Authorization") for srv in (model, judge, embed) for h in srv.headers}
    assert {f"Bearer {PLANTED_KEY}", f"Bearer {JUDGE_KEY}", f"Bearer {EMBED_KEY}"} <= sent  # the keys were used
    written = {p.name for p in out.iterdir()}
    assert {"run.json", "r.html", "s.md", "c.md", "j.xml", "run3.json", "c3.md"} <= written, written
    assert (cfg.parent / "baseline.json").is_file() and summary.is_file() and any(cache.rglob("*"))
    assert _files_holding(tmp_path, ALL_SECRETS, skip={cfg}) == []
    for res in (first, second, third):
        for stream in (res.stdout, res.stderr):
            assert not [s for s in ALL_SECRETS if s in stream], stream
    assert "redis://***@127.0.0.1:1/0" in third.stderr
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["api_base"] == model.url  # the URL itself is kept whole
