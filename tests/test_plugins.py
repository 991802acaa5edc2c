"""Scorer plugins: a tiny package installed (a real ``*.dist-info`` with
``entry_points.txt`` on the path, found by ``importlib.metadata``) registers
scorers in the entry-point group ``llmops.scorers``; ``llmops scorers`` lists
them and a config that names one is scored through the real HTTP path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ANSWERS
from llmops_cli.testing import FakeOpenAI


def install_tiny_plugin(site: Path) -> Path:
    """A package ``llmops_tiny`` 0.3.1 with two scorers: a per-case function
    (``shouty``) and one that registers itself (``length_ok``); and a broken one."""
    pkg = site / "llmops_tiny"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent('''
        from llmops_cli import MetricResult, mean, register

        def shouty(output, references):
            """1 when the answer is in capitals."""
            return 1.0 if output.isupper() else 0.0

        @register("length_ok", description="answers of at most 3 words")
        def length_ok(outputs, references):
            per = [None if o is None else float(len(o.split()) <= 3) for o in outputs]
            return MetricResult("length_ok", per, mean(per))
        '''))
    (pkg / "broken.py").write_text("raise ImportError('needs a missing library')\n")
    info = site / "llmops_tiny-0.3.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: llmops-tiny\nVersion: 0.3.1\n")
    (info / "entry_points.txt").write_text("[llmops.scorers]\nshouty = llmops_tiny:shouty\nlength_ok = llmops_tiny:length_ok\n"
                                           "broken = llmops_tiny.broken:scorer\n")
    (info / "RECORD").write_text("")
    return site


def llmops(*args, site: Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "llmops_cli.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


def test_scorers_lists_plugins_with_their_package(tmp_path):
    site = install_tiny_plugin(tmp_path / "site")
    res = llmops("scorers", site=site)
    assert res.returncode == 0, res.stderr
    out = " ".join(res.stdout.split())
    assert "shouty" in out and "length_ok" in out and "llmops-tiny==0.3.1" in out and "built-in" in out
    assert "1 when the answer is in capitals." in out
    assert "plugin broken failed to load" in out and "needs a missing library" in out


def test_a_plugin_scorer_is_scored_and_gated(tmp_path, make_project, litellm_loaded):
    site = install_tiny_plugin(tmp_path / "site")
    with FakeOpenAI(reply=lambda m, b: ANSWERS[m[-1]["content"].rsplit("Question: ", 1)[-1].strip()].upper()) as srv:
        cfg = make_project(srv.url)
        text = cfg.read_text().replace("metrics: [exact_match, token_f1, bleu, rougeL]", "metrics: [token_f1, shouty, length_ok]")
        cfg.write_text(text.replace("    token_f1: {max_drop: 0.05}\n", "    token_f1: {max_drop: 0.05}\n    shouty: {max_drop: 0.1}\n"))
        res = llmops("eval", cfg, "--update-baseline", "-o", tmp_path / "run.json", site=site, cwd=cfg.parent)
    assert res.returncode == 0, res.stdout + res.stderr
    rec = json.loads((tmp_path / "run.json").read_text())
    assert rec["metrics"]["shouty"]["aggregate"] == 1.0
    assert rec["metrics"]["length_ok"]["aggregate"] == pytest.approx(5 / 6)  # "Levi's Stadium in Santa Clara": 5 words


def test_a_config_naming_an_unknown_or_broken_plugin_is_exit_2(tmp_path, make_project):
    site = install_tiny_plugin(tmp_path / "site")
    cfg = make_project()
    cfg.write_text(cfg.read_text().replace("metrics: [exact_match, token_f1, bleu, rougeL]", "metrics: [token_f1, broken]"))
    res = llmops("validate", cfg, "--update-baseline", site=site)
    assert res.returncode == 2 and "failed to load" in res.stderr and "needs a missing library" in res.stderr
    cfg.write_text(cfg.read_text().replace("metrics: [token_f1, broken]", "metrics: [token_f1, nosuch]"))
    res = llmops("validate", cfg, "--update-baseline", site=site)
    assert res.returncode == 2 and "unknown metric 'nosuch'" in res.stderr and "shouty" in res.stderr
