"""Checks: per-case assertions on an output, scored 1 (pass) or 0 (fail)
with a one-line reason, gated like every metric (the same paired statistics
and family-wise correction; a case the model failed counts as 0).

Types (see :class:`~llmops_cli.config.models.Check`): ``equals``,
``contains``, ``icontains``, ``not_contains``, ``starts_with``, ``regex``,
``is_json``, ``json_schema`` (the ``jsonschema`` library), ``length``,
``python`` (a function of the user's). String values are Jinja2 templates
over the case's inputs and ``references``, rendered when the run is planned
(an undefined variable is exit 2 before any model call). With ``field``, the
check looks at one field of a JSON answer; an answer that does not parse, or
lacks the field, fails the check — it is never left out.

A ``python`` check runs contained (:func:`call_contained`): whatever it
raises — ``SystemExit`` included — or returns that is not a score, and a
call that outlasts its time limit (``timeout``, default 10 s), *fails* the
check for that case with the reason: the answer exists and the check could
not pass it, so it counts as 0, never left out and never a pass. Only
Ctrl-C and SIGTERM pass through (the run stops).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from llmops_cli.config import Check, Config, ConfigError
from llmops_cli.config.measure import CHECK_TIMEOUT_S
from llmops_cli.record.schema import CaseRecord, MetricSummary
from llmops_cli.measure.scorers import answer_field, mean

Verdict = tuple[float | None, str | None]  # (score 0–1 or None = unscored, reason or None)


@dataclass
class Prepared:
    """A check ready to run: its spec, a compiled regex, a loaded JSON Schema
    validator or an imported function, as its type needs."""

    name: str
    spec: Check
    regex: Any = None  # a compiled pattern of the ``regex`` library (compile_regex)
    validator: Any = None
    function: Callable[..., Any] | None = None


def compile_regex(pattern: str):
    """``pattern`` compiled by the ``regex`` library (``re``'s syntax and
    semantics: its VERSION0), whose searches take a ``timeout`` in seconds and
    stop with ``TimeoutError``; ``re`` has none, and ``(a+)+$`` took 21 s on
    a 29-character answer. Raises ``ValueError`` on an invalid pattern,
    ``RecursionError`` on one nested too deeply."""
    import regex

    try:
        return regex.compile(pattern)
    except regex.error as e:
        raise ValueError(str(e)) from None


def prepared_checks(cfg: Config) -> dict[str, Prepared]:
    """The checks of ``cfg`` compiled once (:func:`prepare_checks`) and kept on it.
    Raises :class:`ConfigError`."""
    if cfg._checks is None:
        cfg._checks = prepare_checks(cfg)
    return cfg._checks


def prepare_checks(cfg: Config) -> dict[str, Prepared]:
    """Compile every check of ``cfg`` (regexes, JSON Schemas, python imports).

    Raises:
        ConfigError: an invalid regex, JSON Schema or schema file, a python
            check that cannot be imported or is not callable (names the key).
    """
    path = cfg.path or "<config>"
    out = {}
    for name, spec in cfg.checks.items():
        key = f"checks.{name}.{spec.type}"
        p = Prepared(name, spec)
        if spec.regex is not None and "{{" not in spec.regex:
            try:
                p.regex = compile_regex(spec.regex)
            except (ValueError, RecursionError, OverflowError) as e:  # the parser recurses on nested groups
                raise ConfigError(path, key, f"invalid regular expression: {e or 'nested too deeply'}") from None
        elif spec.json_schema is not None:
            p.validator = _validator(spec.json_schema, cfg, path, key)
        elif spec.python is not None:
            p.function = _import(spec.python, cfg, path, key)
        out[name] = p
    return out


def _validator(schema: dict[str, Any] | str, cfg: Config, path, key: str):
    import jsonschema

    if isinstance(schema, str):
        file = cfg.resolve(schema)
        try:
            schema = json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(path, key, f"schema file not found: {file}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(path, key, f"cannot read schema {file}: {e}") from None
        except RecursionError:
            raise ConfigError(path, key, f"cannot read schema {file}: JSON nested too deeply") from None
    try:
        cls = jsonschema.validators.validator_for(schema)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as e:
            raise ConfigError(path, key, f"not a valid JSON Schema: {e.message}") from None
        validator = cls(schema)
        if isinstance(schema, dict):  # a boolean schema (true/false) has no $ref
            _resolve_refs(validator, schema, path, key)
    except RecursionError:  # checking a schema recurses into it
        raise ConfigError(path, key, "JSON Schema nested too deeply to check") from None
    return validator


def _refs(node: Any, where: str = "#"):
    """Every ``$ref`` in a schema: ``(its location, the reference)``."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield where, v
            else:
                yield from _refs(v, f"{where}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _refs(v, f"{where}/{i}")


def _resolve_refs(validator, schema: dict[str, Any], path, key: str) -> None:
    """Resolve every ``$ref`` of ``schema`` now (jsonschema's ``referencing``
    resolver), so that a reference pointing nowhere is exit 2 before any
    model call rather than an error on the first answer checked."""
    from referencing.exceptions import Unresolvable

    resolver = getattr(validator, "_resolver", None)
    if resolver is None:
        return
    for where, ref in _refs(schema):
        try:
            resolver.lookup(ref)
        except Unresolvable as e:
            raise ConfigError(path, key, f"the $ref {ref!r} at {where} resolves to nothing ({type(e).__name__})") from None


def module_file(target: str, cfg: Config, *, existing: bool = True) -> Path | None:
    """The file of a python check's ``path.py:function`` (resolved against
    the config's folder) or ``module:function`` when that module is a
    ``.py`` file next to the config; None for a module imported from
    elsewhere (installed). ``existing=False``: for a ``module:function``,
    the file it would be next to the config, whether or not it is there."""
    where = target.rpartition(":")[0]
    if where.endswith(".py"):
        return cfg.resolve(where)
    file = cfg.base_dir / (where.replace(".", "/") + ".py")
    return file if file.is_file() or not existing else None


def _import(target: str, cfg: Config, path, key: str) -> Callable[..., Any]:
    """``module:function`` (importable, or a module next to the config) or
    ``path.py:function`` (relative to the config's folder)."""
    import importlib
    import importlib.util
    import sys

    where, _, attr = target.rpartition(":")
    try:
        if where.endswith(".py"):
            file = cfg.resolve(where)
            spec = importlib.util.spec_from_file_location(f"llmops_check_{file.stem}", file)
            if spec is None or not file.is_file():
                raise ConfigError(path, key, f"file not found: {file}")
            module = importlib.util.module_from_spec(spec)
            assert spec.loader is not None  # a .py location always gets a source loader
            spec.loader.exec_module(module)
        else:
            if module_file(target, cfg) is not None:
                _forget_foreign(where.split(".")[0], cfg.base_dir)
            sys.path.insert(0, str(cfg.base_dir))
            try:
                module = importlib.import_module(where)
            finally:
                sys.path.remove(str(cfg.base_dir))
    except ConfigError:
        raise
    except (Exception, SystemExit) as e:  # the user's module failed to import (or exited): bad input, named
        raise ConfigError(path, key, f"cannot import {where}: {type(e).__name__}: {e}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(path, key, f"{where} has no function {attr!r}")
    return fn


def _forget_foreign(top: str, base_dir) -> None:
    """Drop from ``sys.modules`` the module ``top`` and its submodules when
    they were imported from anywhere but ``base_dir`` — another project's
    module of the same name, imported earlier in this process (``eval
    --watch``, ``--baseline-ref``'s checkout, a test suite) — so that a
    ``module:function`` check next to a config is that config's own."""
    import sys

    base = Path(base_dir).resolve()
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if (name != top and not name.startswith(top + ".")) or not file:
            continue
        own = base.joinpath(*name.split("."))
        if Path(file).resolve() not in (own.with_suffix(".py"), own / "__init__.py"):
            del sys.modules[name]


# -- running a check -----------------------------------------------------------------------

def _short(text: str, width: int = 60, *, one_line: bool = True) -> str:
    """``text`` cut to ``width`` characters (``one_line``: its whitespace collapsed first)."""
    if one_line:
        text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


MAX_REASON_CHARS = 500  # a python check's own reason is cut to this many characters in the record


def _text_of(value: Any, width: int, *, one_line: bool = True, show: Callable[[Any], str] = str) -> str:
    """``show(value)`` (``str`` or ``repr``) of what a python check gave (its
    reason, its result, or what it raised), made safe to record: cut by
    :func:`_short`, lone surrogates replaced (no UTF-8 file can hold them),
    and a ``__str__``/``__repr__`` that raises named instead of propagating."""
    from llmops_cli.core.files import valid_text

    try:
        text = show(value)
    except BaseException as e:  # noqa: B036  (the user's __str__; KeyboardInterrupt is re-raised)
        if isinstance(e, KeyboardInterrupt):
            raise
        text = f"<a {type(value).__name__} whose {show.__name__}() raised {type(e).__name__}>"
    return valid_text(_short(text, width, one_line=one_line))


def _target(output: str, field: str | None) -> tuple[Any, str | None]:
    """The text a check looks at, or ``(None, reason)`` when a ``field`` was
    asked for and the answer does not parse or has none."""
    if field is None:
        return output, None
    text, why = answer_field(output, field)
    return (None, why) if why else (text, None)


def _json_answer(text: str) -> tuple[Any, str | None]:
    """The answer parsed as JSON, or ``(None, reason)`` when it is not
    readable as JSON (the check fails with the reason)."""
    try:
        return json.loads(text), None
    except RecursionError:  # valid JSON, perhaps, but deeper than Python's parser reads: not readable as JSON
        return None, "not JSON: nested too deeply to read"
    except ValueError as e:  # a JSONDecodeError, or a plain ValueError (an integer over sys.get_int_max_str_digits())
        return None, f"not JSON: {e.msg} (char {e.pos})" if isinstance(e, json.JSONDecodeError) else f"not JSON: {e}"


def run_check(check: Prepared, output: str, value: Any, inputs: dict[str, Any], references: list[str],
              chunks: list[dict[str, Any]]) -> Verdict:
    """One check on one output: ``(1.0, None)`` on a pass, ``(0.0, reason)``
    on a failure (a python check that raised, returned no score or ran out
    of time included).
    ``value`` is the check's rendered value for this case."""
    spec = check.spec
    text, missing = _target(output, spec.field)
    if missing:
        return 0.0, missing
    t = spec.type
    if t == "equals":
        return (1.0, None) if text.strip() == value.strip() else (0.0, f"{_short(text)!r} is not {_short(value)!r}")
    if t in ("contains", "icontains"):
        values = value if isinstance(value, list) else [value]
        hay = text.lower() if t == "icontains" else text
        found = [v for v in values if (v.lower() if t == "icontains" else v) in hay]
        ok = len(found) == len(values) if spec.match == "all" else bool(found)
        if ok:
            return 1.0, None
        lacking = [v for v in values if v not in found]
        return 0.0, f"does not contain {' and '.join(map(repr, lacking)) if spec.match == 'all' else ' or '.join(map(repr, values))}"
    if t == "not_contains":
        values = value if isinstance(value, list) else [value]
        found = [v for v in values if v in text]
        return (1.0, None) if not found else (0.0, f"contains {', '.join(map(repr, found))}")
    if t == "starts_with":
        return (1.0, None) if text.lstrip().startswith(value) else (0.0, f"starts with {_short(text, 30)!r}, not {value!r}")
    if t == "regex":
        rx = check.regex or compile_regex(value)
        limit = check.spec.timeout or CHECK_TIMEOUT_S
        try:
            found = rx.search(text, timeout=limit)
        except TimeoutError:  # catastrophic backtracking (a hostile or careless pattern): a failed check, not a hang
            return 0.0, f"the search for /{_short(value, 40)}/ took longer than {limit:g} s (checks.{check.name}.timeout)"
        return (1.0, None) if found else (0.0, f"no match for /{value}/")
    if t == "is_json":
        _, why = _json_answer(text)
        return (0.0, why) if why else (1.0, None)
    if t == "json_schema":
        data, why = _json_answer(text)
        if why:
            return 0.0, why
        try:
            err = next(iter(sorted(check.validator.iter_errors(data), key=lambda e: list(e.path))), None)
        except RecursionError:  # validation recurses with the answer's depth
            return 0.0, "schema: the answer is nested too deeply to check"
        if err is None:
            return 1.0, None
        where = "/".join(map(str, err.absolute_path)) or "(root)"
        return 0.0, f"schema: {where}: {_short(err.message, 80)}"
    if t == "length":
        assert spec.length is not None  # spec.type is the one check type given
        n = len(text.split()) if spec.length.unit == "words" else len(text)
        lo, hi = spec.length.min, spec.length.max
        if (lo is not None and n < lo) or (hi is not None and n > hi):
            return 0.0, f"{n} {spec.length.unit}, allowed {lo if lo is not None else 0}–{hi if hi is not None else '∞'}"
        return 1.0, None
    return _call(check, output if spec.field is None else text, inputs, references, chunks)


def _call(check: Prepared, output: str, inputs, references, chunks) -> Verdict:
    """A ``python`` check: keyword arguments the function accepts, among
    ``output``, ``inputs``, ``references``, ``chunks``; its result read as
    bool, 0–1 number, ``(score, reason)`` or ``{"score", "reason"}``."""
    import inspect

    args = {"output": output, "inputs": inputs, "references": references, "chunks": chunks}
    assert check.function is not None  # prepare_checks imported it for this python check
    try:
        params = inspect.signature(check.function).parameters
    except (TypeError, ValueError):
        params = None
    if params is not None and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        args = {k: v for k, v in args.items() if k in params}
    limit = check.spec.timeout or CHECK_TIMEOUT_S
    try:
        result = call_contained(check.function, args, limit)
    except CheckTimeout:
        return 0.0, f"{check.spec.python} took longer than {limit:g} s (checks.{check.name}.timeout)"
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # the user's function failed on this answer (SystemExit included): a failed check
        return 0.0, f"{check.spec.python} raised {type(e).__name__}: {_text_of(e, 80)}"
    reason = None
    if isinstance(result, dict):
        reason = result.get("reason")
        result = result.get("score")
    elif isinstance(result, tuple) and len(result) == 2:
        result, reason = result
    if isinstance(result, bool):
        score = 1.0 if result else 0.0
    elif isinstance(result, (int, float)) and 0 <= result <= 1:
        score = float(result)
    else:
        return 0.0, f"{check.spec.python} returned {_text_of(result, 40, show=repr)}, not a bool or a 0–1 score"
    return score, (None if score == 1.0 else (_text_of(reason, MAX_REASON_CHARS, one_line=False) if reason else "failed"))


class CheckTimeout(BaseException):
    """A python check outlasted its time limit (a BaseException, so that a
    check's own ``except Exception`` cannot swallow it)."""


def call_contained(fn, kwargs: dict[str, Any], limit: float):
    """``fn(**kwargs)`` under a time limit of ``limit`` seconds.

    In the main thread on POSIX, a one-shot ``ITIMER_REAL`` timer raises
    :class:`CheckTimeout` inside the call when it runs out (the previous
    SIGALRM handler and timer are restored afterwards); elsewhere the call
    runs in a daemon thread that is abandoned when it runs out (it cannot be
    killed; the run goes on without it).

    Raises:
        CheckTimeout: the call took longer than ``limit``.
        BaseException: whatever ``fn`` raised (``SystemExit`` included: the
            caller turns it into a failed check)."""
    import signal
    import threading

    if hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread():
        def expire(signum, frame):
            raise CheckTimeout()

        previous = signal.signal(signal.SIGALRM, expire)
        old_timer = signal.setitimer(signal.ITIMER_REAL, limit)
        try:
            return fn(**kwargs)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            if old_timer[0]:
                signal.setitimer(signal.ITIMER_REAL, *old_timer)
    box: dict[str, Any] = {}

    def target():
        try:
            box["result"] = fn(**kwargs)
        except BaseException as e:  # handed to the caller
            box["error"] = e

    worker = threading.Thread(target=target, daemon=True, name="llmops-check")
    worker.start()
    worker.join(limit)
    if worker.is_alive():
        raise CheckTimeout()
    if "error" in box:
        raise box["error"]
    return box["result"]


# -- scoring a run -------------------------------------------------------------------------

def score_checks(cfg: Config, records: list[CaseRecord], values: list[dict[str, Any]],
                 chunks: list[list[dict[str, Any]]]) -> dict[str, MetricSummary]:
    """Run every check on every call of every case (repeats averaged per
    case); fills ``CaseRecord.scores`` and ``.reasons`` (the first failing
    repeat's reason). A case without an output stays unscored here and is
    counted as 0 by the gate. Returns one summary per check
    (:func:`check_summary`)."""
    prepared = prepared_checks(cfg)
    out = {}
    for name, check in prepared.items():
        for i, rec in enumerate(records):
            scores, reason = [], None
            for call in _answered(rec):
                score, why = run_check(check, call.output, values[i].get(name) if values else None, rec.inputs,
                                       rec.references, chunks[i] if chunks else [])
                scores.append(score)
                reason = reason or why
            rec.scores[name] = mean(scores) if scores else None
            if reason:
                rec.reasons[name] = reason
        out[name] = check_summary(name, check.spec.type, records)
    return out


def _answered(rec: CaseRecord) -> list:
    """The calls of a case that a check looks at: answered, with an output."""
    return [c for c in rec.calls if c.error is None and c.output is not None]


def check_summary(name: str, type_: str, records: list[CaseRecord]) -> MetricSummary:
    """The summary of check ``name`` (of type ``type_``) over ``records``
    (checked already): the pass rate (mean of the scored cases); ``info``:
    ``{"check": True, "type": ..., "failed": cases scored below 1,
    "unscored_by_check": answered cases the check could not score}``. Used
    by a run and by a merge of shards (:mod:`llmops_cli.jobs.merge`)."""
    per_case = [rec.scores.get(name) for rec in records]
    scored = sum(v is not None for v in per_case)
    n_failed = sum(v is not None and v < 1 for v in per_case)
    n_unscored = sum(v is None and bool(_answered(rec)) for v, rec in zip(per_case, records))
    return MetricSummary(aggregate=mean(per_case), scale=1.0, n_scored=scored, n_unscored=len(per_case) - scored,
                         info={"check": True, "type": type_, "failed": n_failed, "unscored_by_check": n_unscored})
