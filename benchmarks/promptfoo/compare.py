"""llmops vs promptfoo, side by side, against the same test server.

Both tools get the same cases — the first N of the 810 SQuAD questions of
examples/squad-rag, each with its paragraph — rendered into the same two chat
messages (system + user, identical request bodies), sent to one
OpenAI-compatible server on 127.0.0.1 (llmops_cli.testing.FakeOpenAI) that
sleeps `--latency` seconds per request and answers the reference. Each run is
a whole process (`llmops eval …` / `promptfoo eval …`), timed from spawn to
exit; its peak RSS and CPU time come from wait4(2).

Measured for each size, in `--rounds` rounds (the tools alternating which goes
first; before each round the script waits until the 1-minute load average is
below `--max-load`), medians reported:

  default   each tool's default concurrency, no cache: llmops adaptive
            (8 → up to 64), promptfoo 4
  C=32      both `-j 32`, no cache
  cached    a re-run with every answer in the tool's cache (filled once,
            untimed, before the rounds); llmops gates it against the baseline
            the runs before it wrote (the same answers)
  start-up  `llmops --version` vs `promptfoo --version` (median of 5 a round)

promptfoo is the pinned npm package in benchmarks/promptfoo/node_modules
(package.json + package-lock.json; installed with `npm ci` on the first run,
the only step that uses the network), run with telemetry, update checks,
sharing and remote generation off. Even so it posts a "telemetry disabled"
event to r.promptfoo.app once per process, so with `--isolate auto` (default)
the benchmark re-executes itself in a new network namespace that has only the
loopback interface (`unshare -n`, or `unshare -rn` without root): nothing can
leave the machine, and that post fails at once.

Usage: python benchmarks/promptfoo/compare.py [--sizes 400 810] [--latency 0.2]
           [--rounds 3] [--json benchmarks/promptfoo/results.json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA = ROOT / "examples" / "squad-rag" / "data"
PROMPTFOO = HERE / "node_modules" / ".bin" / "promptfoo"
LLMOPS = Path(sys.executable).parent / "llmops"

SYSTEM = ("Answer the question using the text. Reply with the shortest phrase from the text that answers it, "
          "and nothing else.")
USER = "Text: {{ context }}\n\nQuestion: {{ question }}\nAnswer:"
MAX_TOKENS = 24

# promptfoo: no telemetry, no update check, no sharing, no remote generation,
# no runtime (Node 20 end-of-support) banner; no per-run debug log file (with
# it, 0.121.20 sometimes crashes at exit with winston's "write after end",
# promptfoo PRs #6511/#6514/#6625). Its config dir, database and cache live in
# the benchmark's temporary folder.
PROMPTFOO_ENV = {
    "PROMPTFOO_DISABLE_TELEMETRY": "1",
    "PROMPTFOO_DISABLE_UPDATE": "1",
    "PROMPTFOO_DISABLE_SHARING": "1",
    "PROMPTFOO_DISABLE_REMOTE_GENERATION": "1",
    "PROMPTFOO_DISABLE_REDTEAM_REMOTE_GENERATION": "1",
    "PROMPTFOO_DISABLE_RUNTIME_WARNINGS": "1",
    "PROMPTFOO_DISABLE_SHARE_EMAIL_REQUEST": "1",
    "PROMPTFOO_DISABLE_DEBUG_LOG": "1",
}
NETNS_FLAG = "LLMOPS_BENCH_IN_NETNS"


# -- isolation -----------------------------------------------------------------
def loopback_up() -> None:
    """Bring `lo` up (a new network namespace starts with it down)."""
    import fcntl
    import socket
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sH14s", fcntl.ioctl(s, siocgifflags, struct.pack("16sH14s", b"lo", 0, bytes(14))))[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sH14s", b"lo", flags | iff_up, bytes(14)))


def reexec_isolated(mode: str) -> str:
    """Re-execute this script in a network namespace with only loopback.
    Returns a description of the isolation in effect (when not re-executing)."""
    if os.environ.get(NETNS_FLAG):
        loopback_up()
        return os.environ[NETNS_FLAG]
    if mode == "no":
        return "none (env vars only)"
    unshare = shutil.which("unshare")
    for flags in (["-n"], ["-r", "-n"]):
        if unshare and subprocess.run([unshare, *flags, "true"], capture_output=True).returncode == 0:
            env = {**os.environ, NETNS_FLAG: f"network namespace with loopback only (unshare {' '.join(flags)})"}
            os.execve(unshare, [unshare, *flags, sys.executable, *sys.argv], env)
    if mode == "yes":
        sys.exit("compare.py: cannot create a network namespace (unshare -n / -rn); use --isolate no")
    print("note: no network namespace available; relying on the tools' settings alone", file=sys.stderr)
    return "none (unshare unavailable; env vars only)"


# -- the machine ---------------------------------------------------------------
def load1() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def wait_for_quiet(max_load: float, give_up_s: float) -> dict:
    t0, first = time.monotonic(), load1()
    while (now := load1()) >= max_load:
        waited = time.monotonic() - t0
        if waited >= give_up_s:
            print(f"  load {now:.2f} still ≥ {max_load} after {waited / 60:.0f} min: measuring anyway", flush=True)
            return {"load_before": first, "load_at_start": now, "waited_s": waited, "gave_up": True}
        print(f"  waiting for the 1-minute load average to drop below {max_load} (now {now:.2f})", flush=True)
        time.sleep(10)
    return {"load_before": first, "load_at_start": now, "waited_s": time.monotonic() - t0, "gave_up": False}


def machine() -> str:
    model = ""
    try:
        model = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                     if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return f"{os.cpu_count()} cores ({model or platform.machine()}), {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}, Node {node}"


# -- one measured process ------------------------------------------------------
# The measured processes are started by a small helper process, not by this
# one: a child's ru_maxrss starts from the RSS of the process it was forked
# (or vforked) from, and this one holds the test server and every request it
# received — a run that needs 58 MB would report this process's 130 MB.
SPAWNER = r"""
import json, os, subprocess, sys, time
for line in sys.stdin:
    job = json.loads(line)
    with open(job["log"], "wb") as out:
        t = time.perf_counter()
        p = subprocess.Popen(job["cmd"], cwd=job["cwd"], env=job["env"], stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    print(json.dumps({"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_mb": ru.ru_maxrss / 1024,
                      "rc": p.returncode}), flush=True)
"""


class Spawner:
    """Runs commands to completion in fresh processes: wall time (spawn to
    reaped), CPU time (user + sys) and peak RSS — of the largest process of
    the tree, from wait4(2) — of each."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-S", "-c", SPAWNER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def measure(self, cmd: list[str], *, cwd: Path, env: dict, log: Path) -> dict:
        self.proc.stdin.write(json.dumps({"cmd": cmd, "cwd": str(cwd), "env": env, "log": str(log)}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("compare.py: the spawner process died")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


# -- the cases, as both tools read them ----------------------------------------
def squad(n: int) -> list[dict]:
    paras = {p["id"]: p["text"] for p in map(json.loads, (DATA / "corpus.jsonl").read_text().splitlines())}
    qs = [json.loads(ln) for ln in (DATA / "questions.jsonl").read_text().splitlines()]
    if n > len(qs):
        sys.exit(f"compare.py: only {len(qs)} SQuAD questions, asked for {n}")
    return [{"id": q["id"], "question": q["question"], "context": paras[q["paragraph"]], "answers": q["answers"]}
            for q in qs[:n]]


def write_projects(d: Path, cases: list[dict], url: str) -> None:
    """The same cases and messages for both tools, in d/llmops and d/promptfoo."""
    lo, pf = d / "llmops", d / "promptfoo"
    lo.mkdir(parents=True)
    pf.mkdir(parents=True)
    with (lo / "cases.jsonl").open("w") as f:
        for c in cases:
            f.write(json.dumps(c) + "\n")
    (lo / "llmops.yaml").write_text(json.dumps({
        "name": "promptfoo-side-by-side",
        "model": "openai/fake-model",
        "api_base": url,
        "params": {"temperature": 0, "max_tokens": MAX_TOKENS, "timeout": 120},
        "prompt": {"system": SYSTEM, "user": USER},
        "dataset": {"path": "cases.jsonl", "id": "id", "inputs": ["question", "context"], "references": "answers"},
        "metrics": ["exact_match", "token_f1", "bleu", "rougeL"],
        "baseline": "baseline.json",
    }, indent=1) + "\n")  # JSON is YAML
    with (pf / "tests.jsonl").open("w") as f:
        for c in cases:
            f.write(json.dumps({"description": c["id"], "vars": {"question": c["question"], "context": c["context"]},
                                "assert": [{"type": "icontains-any", "value": c["answers"]},
                                           # BLEU and ROUGE (promptfoo has ROUGE-N only) as a RAG eval has them; threshold 0: scored, never failing
                                           {"type": "bleu", "value": c["answers"], "threshold": 0},
                                           {"type": "rouge-n", "value": c["answers"][0], "threshold": 0}]}) + "\n")
    (pf / "prompt.json").write_text(json.dumps([{"role": "system", "content": SYSTEM},
                                                {"role": "user", "content": USER}], indent=1) + "\n")
    (pf / "promptfooconfig.yaml").write_text(json.dumps({
        "description": "llmops side-by-side",
        "prompts": ["file://prompt.json"],
        "providers": [{"id": "openai:chat:fake-model",
                       "config": {"apiBaseUrl": url, "temperature": 0, "max_tokens": MAX_TOKENS}}],
        "tests": ["file://tests.jsonl"],
    }, indent=1) + "\n")


class Bench:
    def __init__(self, work: Path, server, spawner: Spawner, isolation: str):
        self.work, self.srv, self.spawner = work, server, spawner
        self.bodies: list[dict] = []  # the requests of the last run
        base = {k: v for k, v in os.environ.items() if k != NETNS_FLAG}
        base.update(OPENAI_API_KEY="sk-benchmark-not-a-real-key", NO_COLOR="1")
        self.env_llmops = {**base, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        self.env_pf = {**base, **PROMPTFOO_ENV}
        self.isolation = isolation
        self.n_logs = 0

    def _log(self, tag: str) -> Path:
        self.n_logs += 1
        (self.work / "logs").mkdir(exist_ok=True)
        return self.work / "logs" / f"{self.n_logs:03d}-{tag}.log"

    def _pf_env(self, d: Path) -> dict:
        return {**self.env_pf, "PROMPTFOO_CONFIG_DIR": str(d / "home"), "PROMPTFOO_CACHE_PATH": str(d / "cache"),
                "PROMPTFOO_LOG_DIR": str(d / "home" / "logs")}

    def llmops(self, d: Path, mode: str, expect_calls: int | None) -> dict:
        lo = d / "llmops"
        args = [str(LLMOPS), "eval", "llmops.yaml", "-o", "run.json"]
        if mode == "cached":
            args += ["--cache-dir", "cache"]  # gated against the baseline of the fill run
        elif mode == "fill":
            args += ["--cache-dir", "cache", "--update-baseline"]
        else:
            args += ["--no-cache", "--update-baseline"]
            if mode == "c32":
                args += ["-j", "32"]
        return self._run("llmops", mode, args, lo, self.env_llmops, expect_calls)

    def promptfoo(self, d: Path, mode: str, expect_calls: int | None) -> dict:
        pf = d / "promptfoo"
        args = [str(PROMPTFOO), "eval", "-c", "promptfooconfig.yaml"]
        if mode not in ("cached", "fill"):
            args += ["--no-cache"]
            if mode == "c32":
                args += ["-j", "32"]
        return self._run("promptfoo", mode, args, pf, self._pf_env(pf), expect_calls)

    def _run(self, tool: str, mode: str, args: list[str], cwd: Path, env: dict, expect_calls: int | None) -> dict:
        self.srv.reset()  # the server keeps every request: keep only the last run's
        log = self._log(f"{tool}-{mode}")
        r = self.spawner.measure(args, cwd=cwd, env=env, log=log)
        r["calls"] = self.srv.request_count
        self.bodies = list(self.srv.requests)
        r["load1_after"] = load1()
        if r["rc"] != 0 or (r["calls"] != expect_calls if expect_calls is not None else not r["calls"]):
            tail = log.read_text(errors="replace")[-3000:]
            raise SystemExit(f"{tool} {mode}: exit {r['rc']}, {r['calls']} calls (expected {expect_calls}); "
                             f"log {log}:\n{tail}")
        return r

    def startup(self, tool: str, k: int = 5) -> dict:
        cmd, env = ([str(LLMOPS), "--version"], self.env_llmops) if tool == "llmops" else \
                   ([str(PROMPTFOO), "--version"], self._pf_env(self.work / "startup"))
        runs = [self.spawner.measure(cmd, cwd=self.work, env=env, log=self._log(f"{tool}-version")) for _ in range(k)]
        if any(r["rc"] for r in runs):
            raise SystemExit(f"{tool} --version failed")
        return {"wall_s": statistics.median(r["wall_s"] for r in runs),
                "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs), "runs": runs}


def same_requests(a: list[dict], b: list[dict]) -> list[str]:
    """The bodies the server received from each tool's fill run, compared as
    sets of (model, messages, temperature, max_tokens) — the fill runs use the
    cache, and a cache may send a repeated question once. Returns the body
    fields only one tool sent."""
    def key(body):
        return json.dumps([body.get("model"), body.get("messages"), float(body.get("temperature", -1)),
                           body.get("max_tokens", body.get("max_completion_tokens"))], sort_keys=True)
    ka, kb = sorted(set(map(key, a))), sorted(set(map(key, b)))
    if ka != kb:
        diff = next(((x, y) for x, y in zip(ka, kb) if x != y), (ka[:1], kb[:1]))
        raise SystemExit(f"the two tools sent different requests, e.g.\n  {str(diff[0])[:600]}\n  {str(diff[1])[:600]}")
    return sorted(set(a[0]) ^ set(b[0]))


# -- report ----------------------------------------------------------------------
def med(runs: list[dict], key: str = "wall_s") -> float:
    return statistics.median(r[key] for r in runs)


def table(res: dict) -> str:
    rows = ["| measure | llmops | promptfoo | llmops ÷ promptfoo | target | |", "|---|---:|---:|---:|---|---|"]

    def rng(runs, key="wall_s", unit="s", fmt="{:.2f}"):
        vals = sorted(r[key] for r in runs)
        return f"{fmt.format(statistics.median(vals))} {unit}" + \
            (f" ({fmt.format(vals[0])}–{fmt.format(vals[-1])})" if len(vals) > 1 else "")

    def row(name, lo, pf, target=None, key="wall_s", unit="s", fmt="{:.2f}"):
        ratio = med(lo, key) / med(pf, key)
        ok = "" if target is None else ("met" if ratio <= target else "missed")
        tgt = "" if target is None else f"≤ {target:.2f}" + (f" (≥ {1 / target:.1f}× faster)" if target < 0.5 else "")
        rows.append(f"| {name} | {rng(lo, key, unit, fmt)} | {rng(pf, key, unit, fmt)} | {ratio:.2f} | {tgt} | {ok} |")

    lat = res["latency_s"]
    for n, m in res["sizes"].items():
        lo, pf = m["llmops"], m["promptfoo"]
        peak = max(r.get("concurrency_peak") or 0 for r in lo["default"])
        row(f"{n} cases, {lat * 1000:.0f} ms: defaults (llmops adaptive, peak {peak}; promptfoo 4)",
            lo["default"], pf["default"], 0.3)  # the targets are issue 23's
        row(f"{n} cases: both `-j 32`", lo["c32"], pf["c32"], 0.9)
        rows.append(f"| … ideal at 32: N × latency ÷ 32 | {int(n) * lat / 32:.2f} s | {int(n) * lat / 32:.2f} s | | | |")
        row(f"{n} cases: cached re-run", lo["cached"], pf["cached"])
        row(f"{n} cases: CPU time, `-j 32` (user + sys)", lo["c32"], pf["c32"], key="cpu_s")
        row(f"{n} cases: peak RSS, defaults", lo["default"], pf["default"], key="peak_rss_mb", unit="MB", fmt="{:.0f}")
        row(f"{n} cases: peak RSS, `-j 32`", lo["c32"], pf["c32"], key="peak_rss_mb", unit="MB", fmt="{:.0f}")
        row(f"{n} cases: peak RSS, cached re-run", lo["cached"], pf["cached"], key="peak_rss_mb", unit="MB", fmt="{:.0f}")
    s = res["startup"]
    row("start-up: `--version` (median of 5 a round)", s["llmops"], s["promptfoo"], fmt="{:.3f}")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[400, 810])
    ap.add_argument("--latency", type=float, default=0.2, help="seconds the server sleeps per request")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-load", type=float, default=0.6, help="wait for the 1-minute load average below this")
    ap.add_argument("--give-up", type=float, default=600, help="seconds to wait for a quiet machine, at most")
    ap.add_argument("--isolate", choices=["auto", "yes", "no"], default="auto",
                    help="run in a network namespace with loopback only (default: when unshare works)")
    ap.add_argument("--json", default=str(HERE / "results.json"))
    ap.add_argument("--keep", action="store_true", help="keep the work folder (projects, logs)")
    a = ap.parse_args()
    if not PROMPTFOO.exists() and not os.environ.get(NETNS_FLAG):
        print(f"installing promptfoo (pinned in {HERE.relative_to(ROOT)}/package-lock.json) with npm ci", flush=True)
        subprocess.run(["npm", "ci", "--prefix", str(HERE), "--no-audit", "--no-fund", "--no-update-notifier"],
                       check=True)
    isolation = reexec_isolated(a.isolate)
    if not PROMPTFOO.exists():
        sys.exit(f"compare.py: {PROMPTFOO} missing; run `npm ci --prefix {HERE.relative_to(ROOT)}`")
    from llmops_cli.testing import FakeOpenAI

    all_cases = squad(max(a.sizes))
    answer = {c["question"]: c["answers"][0] for c in all_cases}

    def reply(messages, body):
        user = messages[-1].get("content") or ""
        q = next((ln[len("Question: "):] for ln in user.splitlines() if ln.startswith("Question: ")), "")
        return answer.get(q, "")

    def git(*args):  # read-only: which code was measured
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout.strip()

    versions = {
        "llmops": subprocess.run([str(LLMOPS), "--version"], capture_output=True, text=True).stdout.strip()
        .removeprefix("llmops, version "),
        "llmops_commit": git("rev-parse", "--short", "HEAD") + (" + uncommitted changes to llmops_cli/"
                                                                if git("status", "--porcelain", "llmops_cli") else ""),
        "promptfoo": json.loads((HERE / "node_modules" / "promptfoo" / "package.json").read_text())["version"],
    }
    res = {"date": dt.datetime.now().isoformat(timespec="seconds"), "machine": machine(), "isolation": isolation,
           "versions": versions, "latency_s": a.latency, "rounds": a.rounds, "max_load": a.max_load,
           "promptfoo_env": PROMPTFOO_ENV,
           "commands": {"llmops": {"default": "llmops eval llmops.yaml -o run.json --no-cache --update-baseline",
                                   "c32": "… -j 32", "cached": "llmops eval llmops.yaml -o run.json --cache-dir cache",
                                   "startup": "llmops --version"},
                        "promptfoo": {"default": "promptfoo eval -c promptfooconfig.yaml --no-cache", "c32": "… -j 32",
                                      "cached": "promptfoo eval -c promptfooconfig.yaml",
                                      "startup": "promptfoo --version"}},
           "sizes": {}, "startup": {"llmops": [], "promptfoo": []}, "round_load": []}
    print(f"{res['machine']}\nllmops {versions['llmops']} ({versions['llmops_commit']}) · promptfoo {versions['promptfoo']}"
          f" · {isolation}", flush=True)

    work = Path(tempfile.mkdtemp(prefix="llmops-vs-promptfoo-"))
    spawner = Spawner()
    res["rss_floor_mb"] = spawner.measure(["true"], cwd=work, env=dict(os.environ), log=work / "true.log")["peak_rss_mb"]
    try:
        with FakeOpenAI(reply=reply, latency_s=a.latency) as srv:
            b = Bench(work, srv, spawner, isolation)
            dirs = {}
            for n in a.sizes:
                d = work / f"n{n}"
                write_projects(d, all_cases[:n], srv.url)
                dirs[n] = d
                print(f"{n} cases: filling both caches (untimed)", flush=True)
                fill_lo = b.llmops(d, "fill", None)
                bodies_lo = b.bodies
                fill_pf = b.promptfoo(d, "fill", None)
                only_one = same_requests(bodies_lo, b.bodies)
                print(f"  same requests from both tools; body fields only one sends: {only_one or 'none'}", flush=True)
                for tool in ("llmops", "promptfoo"):  # untimed warm-ups of the cached path
                    getattr(b, tool)(d, "cached", 0)
                res["sizes"][str(n)] = {"fill": {"llmops": fill_lo, "promptfoo": fill_pf},
                                        "llmops": {"default": [], "c32": [], "cached": []},
                                        "promptfoo": {"default": [], "c32": [], "cached": []}}
            for rnd in range(a.rounds):
                print(f"round {rnd + 1}/{a.rounds}", flush=True)
                quiet = wait_for_quiet(a.max_load, a.give_up)
                res["round_load"].append(quiet)
                order = ("llmops", "promptfoo") if rnd % 2 == 0 else ("promptfoo", "llmops")
                for tool in order:
                    res["startup"][tool].append(b.startup(tool))
                for n in a.sizes:
                    m = res["sizes"][str(n)]
                    for mode in ("default", "c32", "cached"):
                        for tool in order:
                            r = getattr(b, tool)(dirs[n], mode, 0 if mode == "cached" else n)
                            if tool == "llmops":
                                rec = json.loads((dirs[n] / "llmops" / "run.json").read_text())
                                r["concurrency_peak"] = rec.get("usage", {}).get("concurrency_peak")
                            m[tool][mode].append(r)
                            print(f"  {n:>4} {mode:<7} {tool:<9} {r['wall_s']:7.2f} s  cpu {r['cpu_s']:6.2f} s  "
                                  f"rss {r['peak_rss_mb']:5.0f} MB  calls {r['calls']}"
                                  + (f"  peak {r['concurrency_peak']}" if r.get("concurrency_peak") else ""),
                                  flush=True)
    finally:
        spawner.close()
        if a.keep:
            print(f"work folder: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    gave_up = [q for q in res["round_load"] if q["gave_up"]]
    print(f"\n{res['date'][:10]} · {res['machine']} · {a.rounds} rounds, medians (min–max)"
          f" · peak RSS of the largest process (`true` measures {res['rss_floor_mb']:.0f} MB)"
          + (f" · {len(gave_up)} round(s) started with load ≥ {a.max_load}: "
             + ", ".join(f"{q['load_at_start']:.2f}" for q in gave_up) if gave_up else "") + "\n")
    print(table(res))
    print(f"\nall measurements: {a.json}")


if __name__ == "__main__":
    main()
