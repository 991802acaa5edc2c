"""The HTML report (`--html` on eval/score/gate, `llmops report`): real runs
against the fake OpenAI server on 127.0.0.1, the page parsed with the
standard library's HTMLParser — the verdict, every gated metric, every
changed case, inline SVG plots, nothing fetched, a hostile output kept as
text — and, in a real headless Chromium, a hostile output that does not run
while the page's own script does."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import QUESTIONS, run_in_fresh_process, write_jsonl
from llmops_cli.cli import cli
from llmops_cli.config import load_config
from llmops_cli.gate.rules import compare
from llmops_cli.gate.pairing import case_changes
from llmops_cli.record.schema import load_record
from llmops_cli.report import fmt, fmt_ci
from llmops_cli.report.case_table import script_json
from llmops_cli.report.html import html_report
from llmops_cli.testing import FakeOpenAI

N = len(QUESTIONS)
HOSTILE = ("</script><script>document.title='PWNED';document.body.appendChild(document.createElement('pwned'))"
           "</script><img src=x onerror=\"document.title='PWNED'\"><!--<script>")
# the regression: five answers fall (q3's is hostile), q6 stays right
WRONG = {"q1": "I do not know", "q2": "Paris", "q3": HOSTILE, "q4": "a band of friends we saw", "q5": "Beyonce"}
MODE = {"answer": "right"}
GATED = ["token_f1", "exact_match", "short", "latency_s"]
CHECKS = "checks:\n  short: {length: {max: 2, unit: words}}\n"
JUDGE = "judges:\n  correctness: {type: correctness}\n"


def _case_of(text: str) -> dict:
    return next((c for c in QUESTIONS if f"Question: {c['question']}" in text), QUESTIONS[0])


def reply(messages, body):
    """The model under test answers the first reference (or, in the
    regression, WRONG's answer); the judge reasons with markup in its reply."""
    text = messages[-1]["content"]
    case = _case_of(text)
    if "GRADE: X" in text:
        return f"The answer <b>{case['id']}</b> </script><script>alert(1)</script> is judged.\nGRADE: C"
    if MODE["answer"] == "worse" and case["id"] in WRONG:
        return WRONG[case["id"]]
    return case["answers"][0]


def run(args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def project(make_project, litellm_loaded, monkeypatch):
    """A project with slices, a check, a judge and four gated metrics (one
    lower-is-better), its baseline written from right answers; cwd is its folder."""
    MODE["answer"] = "right"
    with FakeOpenAI(reply=reply) as srv:
        cfg = make_project(srv.url, extra=CHECKS + JUDGE)
        text = cfg.read_text(encoding="utf-8")
        text = text.replace("references: answers}", "references: answers, slices: [kind]}")
        text = text.replace("metrics: [exact_match, token_f1, bleu, rougeL]", "metrics: [exact_match, token_f1, bleu, rougeL, latency_s]")
        text = text.replace("    token_f1: {max_drop: 0.05}\n", "    token_f1: {max_drop: 0.05}\n    exact_match: {max_drop: 0.05}\n"
                            "    short: {max_drop: 0.05}\n    latency_s: {max_increase: 5}\n")
        cfg.write_text(text, encoding="utf-8")
        write_jsonl(cfg.parent / "questions.jsonl", [{**q, "kind": q["question"].split()[0].lower()} for q in QUESTIONS])
        monkeypatch.chdir(cfg.parent)
        res = run(["eval", cfg, "--update-baseline"])
        assert res.exit_code == 0, res.output
        yield cfg, srv
    MODE["answer"] = "right"


class Page(HTMLParser):
    """Every element (tag, attributes) in order, the text of each ``<script>``,
    and the text content per section id."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict]] = []
        self.scripts: list[tuple[dict, str]] = []
        self.sections: dict[str, str] = {}
        self._section: list[str] = []
        self._script: dict | None = None
        self.raw = text
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.elements.append((tag, a))
        if tag == "script":
            self._script = a
            self.scripts.append((a, ""))
        if tag == "section":
            self._section.append(a.get("id", ""))
            self.sections.setdefault(self._section[-1], "")

    def handle_endtag(self, tag):
        if tag == "script":
            self._script = None
        if tag == "section" and self._section:
            self._section.pop()

    def handle_data(self, data):
        if self._script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)
        elif self._section:
            self.sections[self._section[-1]] += data

    def text(self, section: str) -> str:
        return " ".join(self.sections.get(section, "").split())

    def tags(self, name: str) -> list[dict]:
        return [a for t, a in self.elements if t == name]

    def cases(self) -> dict:
        (data,) = [text for a, text in self.scripts if a.get("type") == "application/json"]
        return json.loads(data)


def assert_self_contained(html: str, page: Page) -> None:
    """No resource outside the file: no link/img/iframe/..., every src/href a
    fragment, CSS and SVG referring only to fragments, a CSP allowing only the
    page's own script (by its hash)."""
    for tag in ("link", "img", "iframe", "object", "embed", "audio", "video", "source", "base", "form"):
        assert not page.tags(tag), tag
    for tag, attrs in page.elements:
        for key in ("src", "href", "xlink:href", "action", "srcset", "poster", "data"):
            if key in attrs:
                assert attrs[key].startswith("#"), (tag, key, attrs[key])
    assert re.findall(r"url\((?!#)", html) == [] and "@import" not in html
    code = [text for a, text in page.scripts if "type" not in a]
    assert len(code) == 1 and not [a for a, _ in page.scripts if "src" in a]
    (csp,) = [a["content"] for a in page.tags("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    digest = base64.b64encode(hashlib.sha256(code[0].encode("utf-8")).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp and "default-src 'none'" in csp


def _rows(page: Page) -> dict[str, list[str]]:
    """The gate table's rows: metric → the text of its other cells."""
    class Rows(HTMLParser):
        def __init__(self):
            super().__init__()
            self.rows, self.cells, self.in_gate, self.cell = {}, None, False, None

        def handle_starttag(self, tag, attrs):
            if tag == "table" and ("class", "gate") in attrs:
                self.in_gate = True
            if self.in_gate and tag == "tr":
                self.cells = []
            if self.in_gate and tag in ("td", "th") and self.cells is not None:
                self.cell = ""

        def handle_endtag(self, tag):
            if tag in ("td", "th") and self.cell is not None:
                self.cells.append(self.cell.strip())
                self.cell = None
            if tag == "tr" and self.cells:
                self.rows.setdefault(self.cells[0], self.cells[1:])
                self.cells = None
            if tag == "table":
                self.in_gate = False

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

    p = Rows()
    p.feed(page.raw)
    return p.rows


def parse(path: Path) -> Page:
    return Page(path.read_text(encoding="utf-8"))


# -- a regression, a pass -------------------------------------------------------------------

def test_regression_report_shows_the_verdict_every_gated_metric_and_every_changed_case(project):
    cfg, srv = project
    MODE["answer"] = "worse"
    res = run(["eval", cfg, "--no-cache", "--html", "report.html", "-o", "run.json"])
    assert res.exit_code == 1, res.output
    page = parse(cfg.parent / "report.html")
    html = page.raw
    assert_self_contained(html, page)

    verdict = page.text("verdict")
    assert "regressed" in verdict and "exit code 1" in verdict and "token_f1" in verdict
    # the gate table holds the terminal's numbers for every gated metric
    record, baseline = load_record("run.json"), load_record("baseline.json")
    cmp = compare(baseline, record, load_config(cfg).gate)
    rows = _rows(page)
    assert [m.metric for m in cmp.metrics] == GATED and set(GATED) <= set(rows)
    for m in cmp.metrics:
        cells = rows[m.metric]
        assert cells[1:5] == [fmt(m.baseline, m.scale, unit=m.unit), fmt(m.candidate, m.scale, unit=m.unit),
                              fmt(m.delta, m.scale, True, m.unit), fmt_ci(m)], (m.metric, cells)
        assert cells[-1] == m.verdict
    assert rows["token_f1"][-1] == "regressed" and rows["latency_s"][-1] in ("pass", "improved")  # timing: either
    # plots are inline SVG: the forest plot names every gated metric, one distribution per metric, latencies
    svgs = re.findall(r"<svg\b.*?</svg>", html, flags=re.S)
    forest = next(s for s in svgs if 'id="plot-forest"' in s)
    for name in GATED:
        assert f">{name}</text>" in forest
    assert len([s for s in svgs if 'id="plot-dist-' in s]) == len(record.metrics)
    assert any('id="plot-latency"' in s for s in svgs)
    # what changed, slices, run statistics
    assert "config unchanged" in page.text("changes") and "no served-model drift" in page.text("changes")
    assert "by kind" in page.text("slices") and "who" in page.text("slices")
    assert "calls made" in page.text("stats") and "judge" in html
    # every case is in the table; every changed case carries its change
    data = page.cases()
    assert {c["id"] for c in data["cases"]} == {q["id"] for q in QUESTIONS}
    changed = {c.id: c for c in case_changes(baseline, record, [m.metric for m in cmp.metrics])}
    assert set(WRONG) <= set(changed)
    by_id = {c["id"]: c for c in data["cases"]}
    for cid, change in changed.items():
        assert by_id[cid]["d"] == change.delta and data["metrics"][by_id[cid]["dm"]]["name"] == change.metric
    assert all("d" not in c for cid, c in by_id.items() if cid not in changed)
    # the hostile output: text in the data, nowhere markup
    assert by_id["q3"]["c"] == HOSTILE and by_id["q3"]["b"] == "Von Miller"
    assert "short" in by_id["q3"]["reasons"] and "<b>q3</b>" in by_id["q3"]["j"][0]["r"][0]["t"]
    assert "document.title='PWNED'" not in html.replace("\\u003c", "<").split("<script id=\"case-data\"")[0]
    assert "<script>document.title" not in html and "<img" not in html and "<b>" not in html
    assert len(page.scripts) == 2 and not page.tags("pwned")
    assert srv.request_count > 0


def test_passed_run_report(project):
    cfg, _ = project
    res = run(["eval", cfg, "--html", "passed.html"])
    assert res.exit_code == 0, res.output
    page = parse(cfg.parent / "passed.html")
    assert_self_contained(page.raw, page)
    verdict = page.text("verdict")
    assert "passed" in verdict and "exit code 0" in verdict and "gate passed" in verdict
    rows = _rows(page)
    assert all(rows[m][-1] == "pass" for m in GATED if m != "latency_s") and rows["latency_s"][-1] in ("pass", "improved")
    data = page.cases()
    assert data["compared"] and len(data["cases"]) == N and not any("d" in c for c in data["cases"])


def test_a_run_that_is_not_gated_still_gets_its_report(project, monkeypatch):
    """--html with --update-baseline reports the run alone under "baseline written"; a run that cannot complete
    (provider errors) reports its partial record as incomplete, exit 3 — never as a pass."""
    cfg, srv = project
    res = run(["eval", cfg, "--update-baseline", "--html", "baseline.html", "-o", "first.json"])
    assert res.exit_code == 0, res.output
    page = parse(cfg.parent / "baseline.html")
    assert_self_contained(page.raw, page)
    assert "baseline written" in page.text("verdict") and "exit code 0" in page.text("verdict")
    assert len(page.cases()["cases"]) == N

    srv.fail_every = {1: 500}  # every request fails
    res = run(["eval", cfg, "--no-cache", "--retries", "0", "--html", "failed.html", "-o", "failed.json"])
    assert res.exit_code == 3, res.output
    verdict = parse(cfg.parent / "failed.html").text("verdict")
    assert "incomplete" in verdict and "exit code 3" in verdict and "passed" not in verdict


def test_report_is_deterministic(project):
    cfg, _ = project
    MODE["answer"] = "worse"
    assert run(["eval", cfg, "--no-cache", "-o", "run.json"]).exit_code == 1
    record, baseline = load_record("run.json"), load_record("baseline.json")
    cmp = compare(baseline, record, load_config(cfg).gate)
    assert html_report(record, cmp, baseline=baseline) == html_report(record, cmp, baseline=baseline)
    cmp.commits = {"baseline": "origin/main 1a2b3c4", "candidate": "working tree at 5d6e7f8"}  # --baseline-ref
    header = " ".join(Page(html_report(record, cmp, baseline=baseline)).raw.split("</header>")[0].split())
    assert "baseline commit</dt><dd><code>origin/main 1a2b3c4</code>" in header
    assert "candidate commit</dt><dd><code>working tree at 5d6e7f8</code>" in header


# -- llmops report ---------------------------------------------------------------------------

def test_report_command_run_alone_and_against_a_baseline(project):
    cfg, _ = project
    MODE["answer"] = "worse"
    assert run(["eval", cfg, "--no-cache", "-o", "run.json"]).exit_code == 1
    res = run(["report", "run.json", "--html", "alone.html"])
    assert res.exit_code == 0 and "report written: alone.html" in res.stdout, res.output
    page = parse(cfg.parent / "alone.html")
    assert_self_contained(page.raw, page)
    assert "not gated" in page.text("verdict") and "exit code" not in page.text("verdict")
    assert not _rows(page) and "token_f1" in page.text("metrics")
    data = page.cases()
    assert not data["compared"] and all(len(s) == 1 for c in data["cases"] for s in c["s"])

    res = run(["report", "run.json", "--baseline", "baseline.json", "--html", "gated.html"])  # config: the record's
    assert res.exit_code == 0 and "gate: regressed, exit code 1" in res.stdout, res.output
    page = parse(cfg.parent / "gated.html")
    assert "regressed" in page.text("verdict") and "exit code 1" in page.text("verdict")
    assert set(GATED) <= set(_rows(page))


@pytest.mark.parametrize("case", ["missing", "corrupt", "unwritable", "overwrite"])
def test_report_command_bad_input_is_exit_2_naming_the_file(project, case):
    cfg, _ = project
    assert run(["eval", cfg, "-o", "run.json"]).exit_code == 0
    (cfg.parent / "corrupt.json").write_text("{not json", encoding="utf-8")
    (cfg.parent / "afile").write_text("x", encoding="utf-8")
    run_arg, html, named = {"missing": ("nope.json", "r.html", "nope.json"),
                            "corrupt": ("corrupt.json", "r.html", "corrupt.json"),
                            "unwritable": ("run.json", "afile/r.html", "afile/r.html"),
                            "overwrite": ("run.json", "run.json", "run.json")}[case]
    before = (cfg.parent / "run.json").read_bytes()
    res = run(["report", run_arg, "--html", html])
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("llmops: error: ") and res.stderr.count("\n") == 1 and named in res.stderr
    assert not (cfg.parent / "r.html").exists() and (cfg.parent / "run.json").read_bytes() == before


def test_html_path_is_checked_before_any_call_and_refused_for_a_shard(project):
    cfg, srv = project
    before = srv.request_count
    res = run(["eval", cfg, "--no-cache", "--html", "llmops.yaml"])
    assert res.exit_code == 2 and "--html" in res.stderr and "refusing to overwrite" in res.stderr, res.output
    res = run(["eval", cfg, "--no-cache", "--shard", "1/2", "--html", "r.html"])
    assert res.exit_code == 2 and "--html" in res.stderr and "shard" in res.stderr, res.output
    assert srv.request_count == before and not (cfg.parent / "r.html").exists()


def test_score_writes_the_html_report_of_outputs_made_elsewhere(project):
    cfg, _ = project
    outputs = {q["id"]: q["answers"][0] for q in QUESTIONS} | {"q3": HOSTILE}
    (cfg.parent / "outputs.json").write_text(json.dumps(outputs), encoding="utf-8")
    res = run(["score", cfg, "--outputs", "outputs.json", "--html", "scored.html"])
    assert res.exit_code in (0, 1, 2, 3) and (cfg.parent / "scored.html").is_file(), res.output
    page = parse(cfg.parent / "scored.html")
    assert {c["id"]: c["c"] for c in page.cases()["cases"]}["q3"] == HOSTILE and len(page.scripts) == 2


def test_script_json_cannot_close_its_element():
    text = script_json({"x": "</script><!--<script>&\u2028"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"x": "</script><!--<script>&\u2028"}


def test_cli_start_up_imports_neither_matplotlib_nor_jinja(tmp_path):
    res = run_in_fresh_process(["report", "--help"], ("matplotlib", "jinja2", "llmops_cli.report.html"), tmp_path)
    assert "EXIT 0" in res.stdout and "LOADED []" in res.stdout, res.stdout + res.stderr


# -- a real browser ------------------------------------------------------------------------

def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium); CI must not skip this test")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return found


def test_hostile_output_does_not_run_in_headless_chromium_but_the_page_script_does(project, tmp_path):
    chromium = _chromium()
    cfg, _ = project
    MODE["answer"] = "worse"
    assert run(["eval", cfg, "--no-cache", "--html", "report.html"]).exit_code == 1
    path = (cfg.parent / "report.html").resolve()
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", path.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert "<title>llmops report" in dom and "PWNED" not in dom.split("</title>")[0]
    assert "<pwned" not in dom and "<img" not in dom
    page = Page(dom)
    assert len(page.scripts) == 2 and not page.tags("pwned")
    # the page's script rendered every case (as text, sorted most fallen first)
    rendered = re.search(r'data-cases-rendered="(\d+)"', dom)
    assert rendered and int(rendered.group(1)) == N
    ids = re.findall(r'<tr class="case[^"]*" tabindex="0" data-id="([^"]+)"', dom)
    assert len(ids) == N and set(ids[:len(WRONG)]) == set(WRONG)
    assert "&lt;/script&gt;&lt;script&gt;document.title='PWNED'" in dom  # the hostile output, shown as text
