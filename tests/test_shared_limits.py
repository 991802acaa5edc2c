"""Rate limits shared across runners: two processes (two shards on two
runners, say) call one deployment with ``rpm: 10``. With a shared Redis
cache, the LiteLLM Router counts each deployment's calls per minute in that
Redis, so the two together stay near the limit; without it each counts
alone and together they send twice the limit. A real ``redis-server``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import write_jsonl
from llmops_cli.testing import FakeOpenAI
from test_redis_cache import REDIS_SERVER, RedisServer

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed (.ci/run installs it)")

RPM = 10
PER_PROCESS = 10
SCRIPT = """\
import sys
from llmops_cli.core.cache import open_cache
from llmops_cli.config import load_config
from llmops_cli.jobs.runner import run_eval
url = sys.argv[2] or None
cache = open_cache(None, url=url) if url else None
rec = run_eval(load_config(sys.argv[1]), cache=cache, concurrency=1, retries=0)
print(sum(c.error is None for c in rec.cases))
"""


def project(d: Path, url: str, tag: str) -> Path:
    d.mkdir(parents=True)
    write_jsonl(d / "q.jsonl", [{"id": f"{tag}{i}", "question": f"question {tag} {i}", "answers": ["x"]}
                                for i in range(PER_PROCESS)])
    cfg = d / "llmops.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        model: openai/fake-model
        deployments:
          - {{api_base: "{url}", rpm: {RPM}, name: only}}
        params: {{temperature: 0, max_tokens: 8, timeout: 10}}
        prompt: {{user: "{{{{ question }}}}"}}
        dataset: {{path: q.jsonl, references: answers}}
        metrics: [exact_match]
        max_error_share: 1.0
        """))
    return cfg


def two_runners(tmp_path: Path, srv: FakeOpenAI, redis_url: str, name: str) -> list[int]:
    """Run the two processes at once; returns the answers each got."""
    if time.localtime().tm_sec > 30:  # the limits are per minute: keep both runs inside one
        time.sleep(61 - time.localtime().tm_sec)
    script = tmp_path / "runner.py"
    script.write_text(SCRIPT)
    procs = [subprocess.Popen([sys.executable, str(script), str(project(tmp_path / f"{name}{k}", srv.url, f"{name}{k}-")),
                               redis_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k in range(2)]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=180)
        assert p.returncode == 0, stderr[-2000:]
        out.append(int(stdout.split()[-1]))
    return out


def test_two_runners_share_a_deployments_rpm_through_redis(tmp_path):
    redis = RedisServer(tmp_path / "redis")
    try:
        with FakeOpenAI(reply=lambda m, b: "x", latency_s=0.4) as srv:
            answered = two_runners(tmp_path, srv, redis.url, "shared")
            shared = srv.request_count
            assert any(k.endswith(tuple(f":rpm:{time.strftime('%H')}-{m:02d}" for m in range(60)))
                       for k in redis.keys())  # the Router's per-minute counters are in Redis
            srv.reset()
            alone = two_runners(tmp_path, srv, "", "alone")
            separate = srv.request_count
    finally:
        redis.kill()
    print("requests: shared", shared, "separate", separate)
    # each counted alone: about twice the limit (LiteLLM lets 9 or 10 a minute through for rpm 10)
    assert separate >= 2 * RPM - 2 and sum(alone) == separate
    # together within the limit, give or take what each sends in LiteLLM's 1-second sync interval
    assert RPM - 2 <= shared <= RPM + 4 and sum(answered) == shared
