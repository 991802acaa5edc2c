"""Prompt templates: Jinja2 with undefined variables as errors.

Templates see the case's input fields by name, plus, when retrieval is on,
``chunks`` (list of ``{id, doc_id, text, score}``) and ``context`` (the chunk
texts joined by blank lines). Never the case's ``references`` (the gold
answers): only judge templates see those, and a prompt template that names
them is refused at load time.

Every template — prompt, retrieval query, judge and check value, also those
read at ``--baseline-ref``'s REF — renders in Jinja2's
``SandboxedEnvironment`` (``jinja2.sandbox``): a template cannot reach
Python objects through attributes (``{{ ''.__class__.__mro__ }}``,
``{{ cycler.__init__.__globals__ }}``) or call methods that change data in
place (:class:`jinja2.sandbox.ImmutableSandboxedEnvironment`). Such a
template is a :class:`ConfigError` (exit 2) naming it — at load time for the
templates a check renders then (:func:`check_template`), else when it is
rendered, before any model call.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from llmops_cli.config.measure import TEMPLATED
from llmops_cli.core.errors import ConfigError

if TYPE_CHECKING:
    from llmops_cli.config import Config


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    """The one environment every config template renders in: sandboxed,
    undefined variables are errors, no autoescape (the text goes to a model)."""
    return ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False,
                                         autoescape=False)


@lru_cache(maxsize=64)
def _compile(text: str) -> jinja2.Template:
    return _env().from_string(text)


@lru_cache(maxsize=64)
def _globals(text: str) -> dict[str, Any]:
    """The template's globals (Jinja2's ``range``, ``namespace``, …) as one
    plain dict, merged once rather than on every render."""
    return dict(_compile(text).globals)


def check_template(text: str, path: str | Path, key: str) -> None:
    """Raise :class:`ConfigError` naming ``path`` and ``key`` if ``text`` is
    not valid Jinja2 syntax, or reads an attribute or item whose name starts
    with ``_`` (``{{ ''.__class__ }}``, ``{{ x['__globals__'] }}``,
    ``{{ x|attr('__dict__') }}``): the sandbox would refuse it when rendering
    (:class:`~jinja2.sandbox.SecurityError`), and this says so at load time,
    before any model call. Names built at render time are the sandbox's."""
    try:
        _compile(text)
        unsafe = _private_name(text)
    except jinja2.TemplateSyntaxError as e:
        raise ConfigError(path, key, f"template syntax error on line {e.lineno}: {e.message}") from None
    except RecursionError:  # Jinja2's parser and compiler recurse: a hostile template is bad input, not a crash
        raise ConfigError(path, key, "template nested too deeply to parse") from None
    if unsafe is not None:
        raise ConfigError(path, key, f"template error: reads {unsafe!r}, which the template sandbox refuses (a "
                          "template cannot reach Python internals)")


@lru_cache(maxsize=64)
def _private_name(text: str) -> str | None:
    """The first ``_``-prefixed attribute or item name ``text`` reads
    literally, or None."""
    from jinja2 import nodes

    for node in _env().parse(text).find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        name: Any = None
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem):
            name = node.arg.value if isinstance(node.arg, nodes.Const) else None
        elif isinstance(node, nodes.Filter):
            name = node.args[0].value if node.name == "attr" and node.args and isinstance(node.args[0], nodes.Const) else None
        if isinstance(name, str) and name.startswith("_"):
            return name
    return None


def probe_sandbox(text: str, variables: dict[str, Any], path: str | Path, key: str) -> None:
    """Render ``text`` once over stand-in ``variables`` only to meet the
    sandbox early: raise :class:`ConfigError` naming ``path`` and ``key`` if
    it refuses something (an unsafe name built while rendering); any other
    error is left for the real render, which has the real variables. For
    templates first rendered after the model calls (a judge's)."""
    try:
        template = _compile(text)
        template.environment.concat(template.root_render_func(template.new_context({**_globals(text), **variables},
                                                                                   shared=True)))
    except SecurityError as e:
        raise ConfigError(path, key, f"template error: {e} (the template sandbox refuses it)") from None
    except Exception:  # noqa: BLE001 — not the sandbox's: the real render reports it with the real variables
        pass


def template_variables(text: str) -> set[str]:
    """The variables ``text`` reads from its context (Jinja2's
    ``meta.find_undeclared_variables``: names it sets itself are left out).
    ``text`` must be valid syntax (see :func:`check_template`)."""
    from jinja2 import meta

    return meta.find_undeclared_variables(_env().parse(text))


def render(text: str, variables: dict[str, Any], path: str | Path, key: str) -> str:
    """Render one template.

    Raises:
        ConfigError: naming ``path`` and ``key`` — the template uses a variable
            the case does not have, or fails while rendering (``{{ 1/0 }}``, a
            filter given the wrong type, ...).
    """
    try:
        # Template.render(**variables) merges the globals' ChainMap into a new dict on every call (half of its
        # time for short prompts: 2430 renders of a cached 810-case run cost 21 ms that way, 10 ms this way)
        template = _compile(text)
        context = template.new_context({**_globals(text), **variables}, shared=True)
        return template.environment.concat(template.root_render_func(context))
    except SecurityError as e:
        raise ConfigError(path, key, f"template error: {e} (the template sandbox refuses it)") from None
    except jinja2.UndefinedError as e:
        raise ConfigError(path, key, f"template error: {e.message}; available: {', '.join(sorted(variables))}") from None
    except jinja2.TemplateError as e:
        raise ConfigError(path, key, f"template error: {e}") from None
    except Exception as e:  # a runtime error inside the template: the template's fault, not a bug of llmops
        raise ConfigError(path, key, f"template error: {type(e).__name__}: {e}") from None


def render_messages(system: str | None, user: str, variables: dict[str, Any], path: str | Path) -> list[dict[str, str]]:
    """Render the chat messages for one case: ``[{"role", "content"}, ...]``.
    Raises :class:`ConfigError` (key ``prompt.system`` or ``prompt.user``) as
    :func:`render` does."""
    messages = []
    if system:
        messages.append({"role": "system", "content": render(system, variables, path, "prompt.system")})
    messages.append({"role": "user", "content": render(user, variables, path, "prompt.user")})
    return messages


# -- check values rendered per case (at planning, before any call) ---------------------------

def render_values(cfg: Config, inputs: dict[str, Any], references: list[str], case_id: str | None = None) -> dict[str, Any]:
    """Each templated check's value for one case (a string, or a list for
    ``contains``-like checks), rendered over the case's inputs and
    ``references``; a templated ``regex`` is compiled too. Raises
    :class:`ConfigError` naming the check (and the case, ``case_id``, for a
    regex that is invalid once rendered)."""
    variables = {**inputs, "references": references}
    out: dict[str, Any] = {}
    for name, spec in cfg.checks.items():
        if spec.type not in TEMPLATED:
            continue
        value = getattr(spec, spec.type)
        key = f"checks.{name}.{spec.type}"
        if isinstance(value, list):
            out[name] = [render(v, variables, cfg.path or "<config>", key) if "{{" in v or "{%" in v else v for v in value]
        else:
            out[name] = render(value, variables, cfg.path or "<config>", key) if "{{" in value or "{%" in value else value
            if spec.type == "regex" and out[name] is not value:
                try:
                    re.compile(out[name])
                except (re.error, RecursionError, OverflowError) as e:
                    raise ConfigError(cfg.path or "<config>", key, f"invalid regular expression once rendered for case "
                                      f"{case_id!r}: /{out[name]}/: {e or 'nested too deeply'}") from None
    return out



def check_no_references(cfg: Config) -> None:
    """The model under test must not see the gold answers: a prompt template
    naming ``references`` (only judges get them), or a reference field listed
    among ``dataset.inputs``, is a :class:`ConfigError`."""
    path = cfg.path or "<config>"
    for part, text in (("system", cfg.system_template), ("user", cfg.user_template)):
        if text is not None and "references" in template_variables(text):
            key = f"prompt.{part}_file" if getattr(cfg.prompt, f"{part}_file") else f"prompt.{part}"
            raise ConfigError(path, key, "uses `references`, the gold answers: the model under test must not see them "
                              "(only judge templates get them)")
    leaked = [f for f in cfg.dataset.inputs or [] if f in cfg.dataset.references]
    if leaked:
        raise ConfigError(path, "dataset.inputs", f"{leaked[0]!r} is also a references field: the model under test "
                          "must not see the gold answers")
