"""The one step between a parsed config and a run: everything a config needs
beyond its YAML, made ready before any model call.

:func:`llmops_cli.config.load_config` only parses and validates structure: it
imports no user code, loads no plugin and reads no file but the YAML, so it is
safe on an untrusted file. :func:`prepare` then

* reads the prompt files and checks every template (prompt, retrieval query,
  templated check values) — an undefined-variable or syntax error is exit 2;
* refuses a prompt that shows the model the gold answers (``references``);
* resolves every metric name: the built-in scorers, else the installed plugins
  (entry points ``llmops.scorers``, loaded only then) — and checks each gate
  rule points the metric's way (``max_drop`` for scores, ``max_increase`` for costs);
* reads each judge's template (its ``template_file`` or the packaged one);
* compiles the checks: regexes, JSON Schemas (``$ref`` resolved), python
  ``module:function`` checks imported — user code runs here, never while loading.

``validate``, ``eval``, ``score`` and the library's :func:`~llmops_cli.jobs.runner.run_eval`
call it; it is idempotent (a prepared config is returned at once).
:func:`run_inputs` lists the files a run reads (for output-path checks and ``--watch``).
"""

from __future__ import annotations

from pathlib import Path

from llmops_cli.config import Config
from llmops_cli.config.measure import TEMPLATED
from llmops_cli.core.errors import ConfigError


def prepare(cfg: Config) -> Config:
    """Make ``cfg`` ready to run (see the module docstring); returns ``cfg``.

    Raises:
        ConfigError: an unreadable prompt or judge template file, a template
            that does not parse, a prompt naming ``references``, an unknown
            metric or a plugin that failed to load, a gate rule pointing the
            wrong way for its metric, a check that cannot be compiled or
            imported. The message names the config file and the key.
    """
    if cfg._prepared:
        return cfg
    path = cfg.path or "<config>"
    from llmops_cli.plan.prompt import check_no_references, check_template

    for key, text in (("prompt.system", cfg.system_template), ("prompt.user", cfg.user_template)):
        if text is not None:
            check_template(text, path, key)
    if cfg.retrieval:
        check_template(cfg.retrieval.query, path, "retrieval.query")
    check_no_references(cfg)
    check_metrics(cfg)
    from llmops_cli.measure.judge import judge_template

    for name in cfg.judges:
        judge_template(cfg, name)  # an unreadable template_file is exit 2 now, not after the model calls
    if cfg.checks:
        for name, spec in cfg.checks.items():
            if spec.type in TEMPLATED:
                value = getattr(spec, spec.type)
                for v in value if isinstance(value, list) else [value]:
                    check_template(v, path, f"checks.{name}.{spec.type}")
        from llmops_cli.measure.checks import prepared_checks

        prepared_checks(cfg)  # a bad regex, schema or python import is exit 2 now
    cfg._prepared = True
    return cfg


def check_metrics(cfg: Config) -> None:
    """Every name in ``metrics`` is a scorer (built in, else from a plugin,
    loaded only when a name is not built in), and every gate rule's margin
    points the metric's way.

    Raises:
        ConfigError: names ``metrics`` or the rule's key.
    """
    from llmops_cli.measure.scorers import SCORERS

    path = cfg.path or "<config>"
    if any(name not in SCORERS for name in cfg.metrics):
        from llmops_cli.measure.plugins import FAILED, load_plugins

        load_plugins()
        for name in cfg.metrics:
            if name in FAILED:
                raise ConfigError(path, "metrics", f"the plugin scorer {name!r} failed to load: {FAILED[name]}")
    for name in cfg.metrics:
        if name not in SCORERS:
            raise ConfigError(path, "metrics", f"unknown metric {name!r}; known: {', '.join(sorted(SCORERS))}")
    rules = [(f"gate.metrics.{n}", n, r) for n, r in cfg.gate.metrics.items()]
    rules += [(f"gate.slices.{k}.{n}", n, r) for k, rs in cfg.gate.slices.items() for n, r in rs.items()]
    for where, name, rule in rules:
        lower = name in SCORERS and not SCORERS[name].higher_is_better
        if lower and rule.max_drop is not None:
            raise ConfigError(path, f"{where}.max_drop", f"{name} is lower-is-better; give max_increase (in its unit) "
                              "or max_increase_pct")
        if not lower and rule.margin_key in ("max_increase", "max_increase_pct"):
            raise ConfigError(path, f"{where}.{rule.margin_key}", f"{name} is higher-is-better; give max_drop")


def run_inputs(cfg: Config, baseline: str | Path | None = None,
               outputs_file: str | Path | None = None) -> dict[str, Path | None]:
    """The files a run of ``cfg`` reads, by description: the config, the
    baseline, the eval set, the corpus, the prompt and judge template files,
    the checks' JSON Schema and python files (a ``module:function`` module
    only when it is a file next to the config), and an ``--outputs`` file.
    For :func:`llmops_cli.core.files.check_outputs` and ``eval --watch``."""
    from llmops_cli.measure.checks import module_file
    from llmops_cli.plan.dataset import dataset_path
    from llmops_cli.plan.retrieval import corpus_path

    files: dict[str, Path | None] = {
        "the config file": cfg.path,
        "the baseline": Path(baseline) if baseline is not None else cfg.baseline_path,
        "the eval set": dataset_path(cfg.dataset, cfg.base_dir),
        "the outputs file": Path(outputs_file) if outputs_file else None,
    }
    if cfg.retrieval:
        files["the retrieval corpus"] = corpus_path(cfg.retrieval, cfg.base_dir)
    for key in ("system_file", "user_file"):
        rel = getattr(cfg.prompt, key)
        if rel:
            files[f"prompt.{key}"] = cfg.resolve(rel)
    for name, judge in cfg.judges.items():
        if judge.template_file:
            files[f"judges.{name}.template_file"] = cfg.resolve(judge.template_file)
    for name, check in cfg.checks.items():
        if isinstance(check.json_schema, str):
            files[f"checks.{name}.json_schema"] = cfg.resolve(check.json_schema)
        elif check.python and (file := module_file(check.python, cfg)) is not None:  # else an installed module
            files[f"checks.{name}.python"] = file
    return files
