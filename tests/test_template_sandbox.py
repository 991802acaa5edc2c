"""Templates cannot run code (issue 21, item 2): prompt, retrieval-query,
judge and check-value templates render in Jinja2's sandbox, keeping
StrictUndefined and today's variables. A server-side-template-injection
payload is exit 2 naming the template, before any model call — at load time
when the template names the attribute literally, when the run is planned
when it builds the name at render time (a judge's template, first rendered
once the answers are in, is rendered once at load over stand-in values for
that) — also in the config read at
``--baseline-ref``'s REF."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from llmops_cli.cli import cli
from llmops_cli.config import ConfigError
from llmops_cli.plan.prompt import check_template, render
from llmops_cli.testing import FakeOpenAI

PAYLOADS = [
    "{{ ''.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__.os.popen('echo PWNED').read() }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ question|attr('__class__') }}",
    "{{ self._TemplateReference__context }}",
    "{{ namespace['__init__'] }}",
]
DYNAMIC = [  # the name built while rendering: only the sandbox can see it
    "{{ lipsum['__glo' ~ 'bals__'] }}",
    "{{ question|attr('__cla' ~ 'ss__') }}",
    "{{ cycler|attr('_' ~ '_init__') }}",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_literal_payload_is_refused_at_load(payload):
    with pytest.raises(ConfigError) as exc:
        check_template(payload, "llmops.yaml", "prompt.user")
    assert exc.value.key == "prompt.user" and "sandbox" in str(exc.value)


@pytest.mark.parametrize("payload", DYNAMIC)
def test_a_payload_built_at_render_time_is_refused_by_the_sandbox(payload):
    check_template(payload, "llmops.yaml", "prompt.user")  # nothing literal to see
    with pytest.raises(ConfigError) as exc:
        render(payload, {"question": "q"}, "llmops.yaml", "prompt.user")
    assert exc.value.key == "prompt.user" and "unsafe" in str(exc.value)


def test_todays_templates_still_render():
    text = ("{% for c in chunks %}[{{ loop.index }}] {{ c.text | upper }}{% endfor %} {{ question | length }} "
            "{{ answers | join(', ') }} {{ range(3) | list }} {{ '%s!' | format(question) }} {{ d.k }} {{ d['k'] }}")
    out = render(text, {"chunks": [{"text": "a"}], "question": "why", "answers": ["x", "y"], "d": {"k": 1}},
                 "c.yaml", "prompt.user")
    assert out == "[1] A 3 x, y [0, 1, 2] why! 1 1"
    with pytest.raises(ConfigError) as exc:
        render("{{ nope }}", {"question": "q"}, "c.yaml", "prompt.user")
    assert "nope" in str(exc.value)  # StrictUndefined kept
    with pytest.raises(ConfigError):  # the immutable sandbox: no changing data in place
        render("{{ answers.append('z') }}", {"answers": ["x"]}, "c.yaml", "prompt.user")


# -- through the CLI: exit 2 naming the template, no model call --------------------------------------

WHERE = {
    "prompt.user": lambda p: f'prompt:\n  user: "{p}"\n',
    "prompt.system": lambda p: f'prompt:\n  system: "{p}"\n  user: "{{{{ question }}}}"\n',
    "retrieval.query": lambda p: f'retrieval: {{corpus: corpus.jsonl, top_k: 2, query: "{p}"}}\n',
    "checks.hostile.contains": lambda p: f'checks:\n  hostile: {{contains: "{p}"}}\n',
    "judges.grader.template_file": lambda p: "judges:\n  grader: {type: correctness, template_file: judge.j2}\n",
}


def _config(make_project, url: str, where: str, payload: str):
    cfg = make_project(url)
    text = cfg.read_text()
    extra = WHERE[where](payload.replace('"', "'"))
    if where.startswith("prompt."):
        start = text.index("prompt:\n")
        end = text.index("retrieval:")
        text = text[:start] + extra + text[end:]
    elif where == "retrieval.query":
        text = "\n".join(line for line in text.splitlines() if not line.startswith("retrieval:")) + "\n" + extra
    else:
        text += extra
    cfg.write_text(text)
    (cfg.parent / "judge.j2").write_text("Grade it.\n" + payload + "\nGRADE: C|P|I\n")
    return cfg


CASES = [(w, p) for w in WHERE for p in (PAYLOADS[0], PAYLOADS[1], DYNAMIC[0])]


@pytest.mark.parametrize("where,payload", CASES)
def test_ssti_is_exit_2_naming_the_template_before_any_model_call(where, payload, make_project, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with FakeOpenAI() as srv:
        cfg = _config(make_project, srv.url, where, payload)
        res = CliRunner().invoke(cli, ["eval", str(cfg), "--update-baseline"])
        assert srv.request_count == 0, res.output
    assert res.exit_code == 2, res.output
    assert res.stderr.count("\n") == 1, res.stderr
    assert where in res.stderr and "PWNED" not in res.output and "<class" not in res.output, res.stderr
    assert not (cfg.parent / "baseline.json").exists()


@pytest.mark.parametrize("payload", [PAYLOADS[1], DYNAMIC[0]], ids=["globals", "dynamic"])
def test_the_config_at_baseline_ref_renders_in_the_same_sandbox(payload, make_project, tmp_path, monkeypatch):
    from test_baseline_ref import commit, git

    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    with FakeOpenAI() as srv:
        cfg = _config(make_project, srv.url, "prompt.user", payload)  # in tmp_path/project0
        (tmp_path / ".gitignore").write_text(".llmops/\n", encoding="utf-8")
        git(tmp_path, "init", "-q")
        commit(tmp_path, "hostile")
        cfg.write_text(cfg.read_text().replace(payload.replace('"', "'"), "Question: {{ question }}"))
        monkeypatch.chdir(cfg.parent)  # the working tree is harmless; REF (HEAD) is not
        res = CliRunner().invoke(cli, ["eval", str(cfg), "--baseline-ref", "HEAD"])
        assert srv.request_count == 0, res.output
    assert res.exit_code == 2, res.output
    assert "HEAD:" in res.stderr and "prompt.user" in res.stderr and "PWNED" not in res.output, res.stderr
