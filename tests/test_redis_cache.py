"""The shared cache in Redis (``cache.url``, ``--cache-url``,
``$LLMOPS_CACHE_URL``), against a real ``redis-server`` started on 127.0.0.1
for each test (Debian's package; ``.ci/run`` installs it): two cache folders
sharing one Redis, TTL, an unreachable or dying Redis, ``cache.required``,
passwords never shown, ``cache info``/``clear``, and the fingerprint."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import QUESTIONS, run_in_fresh_process
from llmops_cli.core.cache import open_cache
from llmops_cli.core.cache.redis import CacheUnavailable, RedisCache, redact_url
from llmops_cli.cli import cli
from llmops_cli.config import load_config
from llmops_cli.core.errors import ConfigError, InputError
from llmops_cli.core.fingerprint import fingerprint
from llmops_cli.record.schema import load_record
from llmops_cli.testing import FakeOpenAI

REDIS_SERVER = shutil.which("redis-server")
N = len(QUESTIONS)
PASSWORD = "s3cret-Redis-pw-4711"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A ``redis-server`` on 127.0.0.1 at a free port, no persistence, in its own folder."""

    def __init__(self, folder: Path, password: str | None = None):
        import redis

        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.password = password
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(folder)]
        if password:
            args += ["--requirepass", password]
        self.log = open(folder / "redis.log", "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.client = redis.Redis(host="127.0.0.1", port=self.port, password=password, socket_timeout=2)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"redis-server did not start: {(folder / 'redis.log').read_text()}") from None
                time.sleep(0.02)

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def keys(self, pattern: str = "*") -> list[str]:
        return sorted(k.decode() for k in self.client.scan_iter(match=pattern))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.client.close()
        self.log.close()


@pytest.fixture
def start_redis(tmp_path):
    """``start_redis(password=None)`` → a started :class:`RedisServer`; all are killed at the end."""
    if REDIS_SERVER is None:
        why = "redis-server is not installed (Debian: apt-get install redis-server; .ci/run installs it)"
        if os.environ.get("CI"):  # .ci/run installs it: CI must not pass by skipping these
            pytest.fail(why)
        pytest.skip(why)
    pytest.importorskip("redis", reason="redis-py is not installed (the [redis] and [test] extras include it)")
    servers: list[RedisServer] = []

    def start(password: str | None = None) -> RedisServer:
        servers.append(RedisServer(tmp_path / f"redis{len(servers)}", password))
        return servers[-1]

    yield start
    for s in servers:
        s.kill()


@pytest.fixture
def redis_server(start_redis) -> RedisServer:
    return start_redis()


@pytest.fixture(autouse=True)
def _no_cache_url(monkeypatch):
    monkeypatch.delenv("LLMOPS_CACHE_URL", raising=False)


def right_answer(messages, body):
    q = messages[-1]["content"].rsplit("Question: ", 1)[-1].strip()
    return next((c["answers"][0] for c in QUESTIONS if c["question"] == q), "I do not know")


def run(args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def warnings_of(res) -> list[str]:
    return [line for line in res.stderr.splitlines() if line.startswith("llmops: warning:")]


def dead_url(password: str | None = None) -> str:
    auth = f":{password}@" if password else ""
    return f"redis://{auth}127.0.0.1:{free_port()}/0"  # nothing listens there: refused


# -- sharing ---------------------------------------------------------------

def test_two_cache_dirs_sharing_one_redis_make_no_second_call(make_project, litellm_loaded, redis_server, tmp_path,
                                                               monkeypatch):
    """Issue 11, item 5: the second run, on another cache folder (another CI
    runner, another developer), is answered entirely from Redis."""
    with FakeOpenAI(reply=right_answer) as srv:
        cfg = make_project(srv.url)
        monkeypatch.chdir(cfg.parent)
        first = run(["eval", cfg, "--update-baseline", "--cache-dir", tmp_path / "runner-a", "--cache-url",
                     redis_server.url, "-o", tmp_path / "a.json"])
        assert first.exit_code == 0, first.output
        assert srv.request_count == N
        assert len(redis_server.keys("llmops:answer:*")) == N and redis_server.keys("llmops:memo:*")
        second = run(["eval", cfg, "--cache-dir", tmp_path / "runner-b", "--cache-url", redis_server.url,
                      "-o", tmp_path / "b.json"])
        assert second.exit_code == 0, second.output
        assert srv.request_count == N  # 0 model calls in the second run
    assert warnings_of(first) == warnings_of(second) == []
    rec = load_record(tmp_path / "b.json")
    assert rec.usage.calls == 0 and rec.usage.cache_hits == N and rec.usage.cache_misses == 0
    assert [c.output for c in rec.cases] == [c.output for c in load_record(tmp_path / "a.json").cases]
    # Redis replaces the local folder: neither runner wrote a SQLite cache
    assert not (tmp_path / "runner-a").exists() and not (tmp_path / "runner-b").exists()


def test_same_keys_as_the_sqlite_cache(make_project, litellm_loaded, redis_server, tmp_path):
    from llmops_cli.core.cache import Cache
    from llmops_cli.jobs.runner import run_eval

    with FakeOpenAI(reply=right_answer) as srv:
        cfg = load_config(make_project(srv.url))
        run_eval(cfg, cache=Cache(tmp_path / "local"))
        run_eval(cfg, cache=open_cache(url=redis_server.url))
    local = Cache(tmp_path / "local")
    db = local._db()
    keys = sorted(k for (k,) in db.execute("SELECT key FROM responses"))
    memo = sorted(k for (k,) in db.execute("SELECT key FROM memo"))
    assert redis_server.keys("llmops:answer:*") == [f"llmops:answer:{k}" for k in keys]
    assert redis_server.keys("llmops:memo:*") == [f"llmops:memo:{k}" for k in memo]
    stored = json.loads(redis_server.client.get(f"llmops:answer:{keys[0]}"))
    assert stored["model"] == "openai/fake-model" and stored["value"]["output"] == local.get(keys[0])["output"]


def test_precedence_flag_over_env_over_config(make_project, litellm_loaded, start_redis, monkeypatch, tmp_path):
    flag, env, configured = start_redis(), start_redis(), start_redis()
    with FakeOpenAI(reply=right_answer) as srv:
        cfg = make_project(srv.url, extra=f"cache: {{url: '{configured.url}'}}\n")
        monkeypatch.chdir(cfg.parent)
        assert run(["eval", cfg, "--update-baseline"]).exit_code == 0
        monkeypatch.setenv("LLMOPS_CACHE_URL", env.url)
        assert run(["eval", cfg, "--update-baseline"]).exit_code == 0
        assert run(["eval", cfg, "--update-baseline", "--cache-url", flag.url]).exit_code == 0
        assert srv.request_count == 3 * N  # each run on an empty Redis
    assert [len(s.keys("llmops:answer:*")) for s in (flag, env, configured)] == [N, N, N]


# -- TTL and prefix ----------------------------------------------------------

def test_ttl_is_set_on_every_entry(make_project, litellm_loaded, redis_server, monkeypatch):
    with FakeOpenAI(reply=right_answer) as srv:
        cfg = make_project(srv.url, extra=f"cache: {{url: '{redis_server.url}', ttl_s: 120, prefix: team-a}}\n")
        monkeypatch.chdir(cfg.parent)
        assert run(["eval", cfg, "--update-baseline"]).exit_code == 0
    keys = redis_server.keys("team-a:*")
    answers = [k for k in keys if k.startswith("team-a:answer:")]
    assert len(answers) == N and any(k.startswith("team-a:memo:") for k in keys)
    assert redis_server.keys("llmops:*") == []
    ttls = [redis_server.client.ttl(k) for k in keys if not k.startswith("team-a:probe:")]
    assert all(0 < t <= 120 for t in ttls), ttls


def test_an_entry_expires_after_its_ttl(redis_server):
    cache = open_cache(url=redis_server.url, ttl_s=1)
    cache.put("k", "m", {"output": "x"})
    cache.put_memo("token_f1:abc", {"per_case": [1.0]})
    assert cache.get("k") == {"output": "x"}
    assert redis_server.client.pttl("llmops:answer:k") <= 1000
    deadline = time.monotonic() + 5
    while redis_server.client.exists("llmops:answer:k", "llmops:memo:token_f1:abc") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cache.get("k") is None and cache.get_memo("token_f1:abc") is None
    no_ttl = open_cache(url=redis_server.url)
    no_ttl.put("k", "m", {"output": "x"})
    assert redis_server.client.ttl("llmops:answer:k") == -1  # kept for ever


# -- Redis unreachable, or failing mid-run -------------------------------------------

def test_unreachable_redis_warns_once_and_runs_uncached(make_project, litellm_loaded, monkeypatch, tmp_path):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with FakeOpenAI(reply=right_answer) as srv:
        cfg = make_project(srv.url, extra=f"cache: {{url: '{url}'}}\n")
        monkeypatch.chdir(cfg.parent)
        res = run(["eval", cfg, "--update-baseline", "-o", tmp_path / "r.json"])
        assert res.exit_code == 0, res.output
        assert srv.request_count == N
        again = run(["eval", cfg, "--update-baseline"])
        assert again.exit_code == 0 and srv.request_count == 2 * N  # nothing was cached anywhere
    warned = warnings_of(res)
    assert len(warned) == 1 and warned[0].startswith(f"llmops: warning: cache {url} unreachable (")
    assert f"127.0.0.1:{port}" in warned[0] and "refused" in warned[0] and warned[0].endswith("); running uncached")
    assert load_record(tmp_path / "r.json").usage.calls == N


def test_required_and_unreachable_is_exit_2_before_any_call(make_project, litellm_loaded, monkeypatch):
    url = dead_url()
    with FakeOpenAI(reply=right_answer) as srv:
        cfg = make_project(srv.url, extra=f"cache: {{url: '{url}', required: true}}\n")
        monkeypatch.chdir(cfg.parent)
        res = run(["eval", cfg, "--update-baseline"])
        assert srv.request_count == 0
        val = run(["validate", cfg, "--update-baseline"])
    assert res.exit_code == 2 and val.exit_code == 2
    line = res.stderr.strip()
    assert res.stderr.count("\n") == 1 and line.startswith(f"llmops: error: {cfg}: cache.url: cache {url} unreachable")
    assert "cache.required is true" in line
    assert not (cfg.parent / "baseline.json").exists() and not (cfg.parent / ".llmops" / "runs").exists()
    # --no-cache still runs: no cache is wanted at all
    with FakeOpenAI(reply=right_answer) as srv:
        res = run(["eval", make_project(srv.url, extra=f"cache: {{url: '{url}', required: true}}\n"),
                   "--update-baseline", "--no-cache"])
        assert res.exit_code == 0 and srv.request_count == N


def test_a_timeout_is_unreachable_after_the_socket_timeout():
    with socket.socket() as listener:  # accepts connections (backlog) and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"redis://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(CacheUnavailable, match=r"unreachable \(Timeout"):
            RedisCache(url, timeout_s=0.3).open()
        assert time.monotonic() - started < 2


def test_redis_killed_mid_run_degrades_to_misses_and_the_run_completes(make_project, litellm_loaded, redis_server,
                                                                       monkeypatch, tmp_path):
    count = {"n": 0}

    def kill_on_third(messages, body):
        count["n"] += 1
        if count["n"] == 3:
            redis_server.kill()
        return right_answer(messages, body)

    with FakeOpenAI(reply=kill_on_third) as srv:
        cfg = make_project(srv.url)
        monkeypatch.chdir(cfg.parent)
        res = run(["eval", cfg, "--update-baseline", "-j", "1", "--cache-url", redis_server.url,
                   "-o", tmp_path / "r.json"])
        assert res.exit_code == 0, res.output
        assert srv.request_count == N
    warned = warnings_of(res)
    assert len(warned) == 1 and warned[0].startswith(f"llmops: warning: cache {redis_server.url} failed (")
    assert warned[0].endswith("; running uncached from here")
    assert load_record(tmp_path / "r.json").status == "complete" and (cfg.parent / "baseline.json").exists()


def test_wrong_password_is_a_warning_without_the_password(make_project, litellm_loaded, start_redis, monkeypatch):
    server = start_redis(password=PASSWORD)
    url = f"redis://:wrong-{PASSWORD}@127.0.0.1:{server.port}/0"
    with FakeOpenAI(reply=right_answer) as srv:
        cfg = make_project(srv.url)
        monkeypatch.chdir(cfg.parent)
        monkeypatch.setenv("LLMOPS_CACHE_URL", url)
        res = run(["eval", cfg, "--update-baseline"])
        assert res.exit_code == 0 and srv.request_count == N
    assert PASSWORD not in res.stdout + res.stderr
    warned = warnings_of(res)
    assert len(warned) == 1 and f"cache redis://***@127.0.0.1:{server.port}/0 unusable (" in warned[0]


# -- secrets ---------------------------------------------------------------

def test_password_never_shown_in_output_record_or_reports(make_project, litellm_loaded, start_redis, monkeypatch,
                                                         tmp_path):
    server = start_redis(password=PASSWORD)
    with FakeOpenAI(reply=right_answer) as srv:
        cfg = make_project(srv.url, extra=f"cache: {{url: '{server.url}', ttl_s: 600}}\n")
        monkeypatch.chdir(cfg.parent)
        first = run(["eval", cfg, "--update-baseline", "-o", tmp_path / "a.json"])
        second = run(["eval", cfg, "-o", tmp_path / "b.json", "--junit", tmp_path / "j.xml", "--markdown",
                      tmp_path / "s.md", "--json"])
        assert first.exit_code == second.exit_code == 0, first.output + second.output
        assert srv.request_count == N  # the second run came from the password-protected Redis
        info = run(["cache", "info", "--cache-url", server.url])
        # unreachable with a password: the warning and the required error redact it
        dead = dead_url(PASSWORD)
        warned = run(["eval", cfg, "--update-baseline", "--cache-url", dead])
        cfg.write_text(cfg.read_text().replace(server.url, dead).replace("ttl_s: 600", "required: true"))
        refused = run(["eval", cfg, "--update-baseline"])
        bad = run(["validate", cfg, "--cache-url", f"http://:{PASSWORD}@127.0.0.1/"])
    assert info.exit_code == 0 and f"redis://***@127.0.0.1:{server.port}/0" in info.stdout
    assert warned.exit_code == 0 and "redis://***@127.0.0.1:" in warned.stderr
    assert refused.exit_code == 2 and "redis://***@127.0.0.1:" in refused.stderr
    assert bad.exit_code == 2 and "--cache-url: expected a redis://" in bad.stderr
    for res in (first, second, info, warned, refused, bad):
        assert PASSWORD not in res.stdout + res.stderr
    written = [tmp_path / n for n in ("a.json", "b.json", "j.xml", "s.md")] + [cfg.parent / "baseline.json"]
    for path in written + sorted((cfg.parent / ".llmops").rglob("*")):
        if path.is_file():
            assert PASSWORD not in path.read_text(errors="replace"), path
    assert "cache" not in load_record(tmp_path / "a.json").config  # the cache settings are not recorded


def test_redact_url():
    assert redact_url("redis://:secret@host:6379/0") == "redis://***@host:6379/0"
    assert redact_url("rediss://user:p@ss/w@host") == "rediss://***@host"
    assert redact_url("redis://host:6379/0?password=secret&db=1") == "redis://host:6379/0?password=***&db=1"
    assert redact_url("redis://host:6379") == "redis://host:6379"


# -- config, flag and env errors -------------------------------------------------

def test_a_bad_url_is_exit_2_naming_its_key(make_project, monkeypatch):
    cfg = make_project(extra="cache: {url: 'http://127.0.0.1:6379'}\n")
    res = run(["validate", cfg, "--update-baseline"])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1
    assert "cache.url: expected a redis://, rediss:// or unix:// URL" in res.stderr
    with pytest.raises(ConfigError, match="cache.url"):
        load_config(cfg)
    ok = make_project()
    res = run(["validate", ok, "--update-baseline", "--cache-url", "localhost:6379"])
    assert res.exit_code == 2 and "--cache-url: expected a redis://" in res.stderr
    monkeypatch.setenv("LLMOPS_CACHE_URL", "memcached://127.0.0.1")
    res = run(["validate", ok, "--update-baseline"])
    assert res.exit_code == 2 and "$LLMOPS_CACHE_URL: expected a redis://" in res.stderr
    with pytest.raises(InputError, match=r"^--cache-url: the URL has no host"):
        open_cache(url="redis://", where="--cache-url")
    for extra in ("cache: {ttl_s: 0}\n", "cache: {prefix: 'a b'}\n", "cache: {urls: x}\n"):
        with pytest.raises(ConfigError, match="cache"):
            load_config(make_project(extra=extra))


def test_the_cache_section_changes_no_fingerprint(make_project):
    plain = load_config(make_project())
    cached = load_config(make_project(extra=f"cache: {{url: 'redis://:{PASSWORD}@127.0.0.1:6379/0', ttl_s: 60, "
                                            "required: true, prefix: ci}\n"))
    assert cached.cache.required and cached.cache.ttl_s == 60
    assert "cache" not in cached.snapshot() and PASSWORD not in json.dumps(cached.snapshot())
    assert PASSWORD not in repr(cached)
    assert fingerprint(cached.snapshot(), "corpus") == fingerprint(plain.snapshot(), "corpus")


# -- validate, cache info / clear -------------------------------------------------

def test_validate_counts_answers_cached_in_redis(make_project, litellm_loaded, redis_server, monkeypatch):
    monkeypatch.setenv("LLMOPS_CACHE_URL", redis_server.url)
    with FakeOpenAI(reply=right_answer) as srv:
        cfg = make_project(srv.url)
        monkeypatch.chdir(cfg.parent)
        assert run(["eval", cfg, "--update-baseline"]).exit_code == 0
        res = run(["validate", cfg])
        assert res.exit_code == 0 and f"{N} model calls ({N} cached)" in " ".join(res.output.split())
        assert srv.request_count == N


def test_cache_info_and_clear_touch_only_our_keys(make_project, litellm_loaded, redis_server, monkeypatch):
    with FakeOpenAI(reply=right_answer) as srv:
        cfg = make_project(srv.url)
        monkeypatch.chdir(cfg.parent)
        assert run(["eval", cfg, "--update-baseline", "--cache-url", redis_server.url]).exit_code == 0
    redis_server.client.set("someone-else:key", "keep me")
    monkeypatch.setenv("LLMOPS_CACHE_URL", redis_server.url)
    info = run(["cache", "info"])
    assert info.exit_code == 0
    text = " ".join(info.stdout.split())
    assert f"{redis_server.url} (keys llmops:*): {N} entries" in text and f"openai/fake-model: {N}" in text
    assert "memoised results:" in text and "token_f1 1" in text
    other = run(["cache", "info", "--prefix", "nobody"])
    assert f"{redis_server.url} (keys nobody:*): 0 entries" in " ".join(other.stdout.split())
    cleared = run(["cache", "clear"])
    assert cleared.exit_code == 0 and f"deleted {N} cached responses" in cleared.stdout
    assert redis_server.keys() == ["someone-else:key"]  # never FLUSHDB
    redis_server.kill()
    down = run(["cache", "info"])
    assert down.exit_code == 2 and down.stderr.startswith(f"llmops: error: cache {redis_server.url} unreachable (")


# -- memoised results ------------------------------------------------------------

def test_a_run_fully_cached_in_redis_imports_no_scorer(make_project, litellm_loaded, redis_server, monkeypatch,
                                                       tmp_path):
    monkeypatch.setenv("LLMOPS_CACHE_URL", redis_server.url)
    with FakeOpenAI(reply=right_answer) as srv:
        cfg = make_project(srv.url)
        monkeypatch.chdir(cfg.parent)
        assert run(["eval", cfg, "--update-baseline", "--cache-dir", tmp_path / "a"]).exit_code == 0
        assert run(["eval", cfg, "--cache-dir", tmp_path / "a"]).exit_code == 0  # memoises the gate's intervals
    # the server is stopped: any call would fail the run; another runner's (empty) cache folder
    res = run_in_fresh_process(["eval", cfg, "--cache-dir", tmp_path / "b", "-o", "run.json"],
                               ("sacrebleu", "rouge_score", "nltk", "litellm", "bm25s", "numpy"), cfg.parent)
    assert "EXIT 0" in res.stdout and "LOADED []" in res.stdout, res.stdout + res.stderr
    assert load_record(cfg.parent / "run.json").usage.cache_hits == N
