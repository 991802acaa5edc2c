"""Reading a config file: YAML (a key given twice is an error), validation
into :class:`~llmops_cli.config.models.Config` with one-line errors naming the
file and key, prompt and judge templates read and checked at load time.

Public API: :func:`load_config`, :func:`parse_config`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import ConfigError
from .models import Config


def _load_text(cfg_path: Path, key: str, rel: str) -> str:
    p = Path(rel)
    p = p if p.is_absolute() else cfg_path.parent / p
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(cfg_path, key, f"file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(cfg_path, key, f"cannot read {p}: {e}") from None


def _validation_message(err: ValidationError) -> tuple[str, str]:
    first = err.errors()[0]
    key = ".".join(str(x) for x in first["loc"]) or None
    msg = first["msg"]
    m = re.match(r"Value error, ([\w.\[\]-]+): (.*)", msg)
    if m and not key:  # model-level checks name their key in the message
        key, msg = m.group(1), m.group(2)
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "missing":
        msg = "required key is missing"
    msg = msg.removeprefix("Value error, ")
    more = len(err.errors()) - 1
    if more:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    return key, msg


def parse_config(data: Any, path: str | Path = "<config>") -> Config:
    """Validate already-loaded YAML data. Raises :class:`ConfigError`."""
    path = Path(path)
    if data is None:
        raise ConfigError(path, None, "the config is empty")
    if not isinstance(data, dict):
        raise ConfigError(path, None, f"expected a mapping at the top level, got {type(data).__name__}")
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        key, msg = _validation_message(e)
        raise ConfigError(path, key, msg) from None
    cfg._path = path.resolve() if path.name != "<config>" else None
    if cfg.prompt.system_file:
        cfg._system_text = _load_text(path, "prompt.system_file", cfg.prompt.system_file)
    if cfg.prompt.user_file:
        cfg._user_text = _load_text(path, "prompt.user_file", cfg.prompt.user_file)
    from ..prompt import check_template

    for key, text in (("prompt.system", cfg.system_template), ("prompt.user", cfg.user_template)):
        if text is not None:
            check_template(text, path, key)
    if cfg.retrieval:
        check_template(cfg.retrieval.query, path, "retrieval.query")
    _check_no_references(cfg, path)
    for name in cfg.judges:
        cfg.judge_template(name)  # an unreadable template_file is exit 2 now, not after the model calls
    if cfg.checks:
        from ..checks import TEMPLATED

        for name, spec in cfg.checks.items():
            if spec.type in TEMPLATED:
                value = getattr(spec, spec.type)
                for v in value if isinstance(value, list) else [value]:
                    check_template(v, path, f"checks.{name}.{spec.type}")
        cfg.prepared_checks()  # a bad regex, schema or python import is exit 2 now
    return cfg


def _check_no_references(cfg: Config, path: Path) -> None:
    """The model under test must not see the gold answers: a prompt template
    naming ``references`` (only judges get them), or a reference field listed
    among ``dataset.inputs``, is a :class:`ConfigError`."""
    from ..prompt import template_variables

    for part, text in (("system", cfg.system_template), ("user", cfg.user_template)):
        if text is not None and "references" in template_variables(text):
            key = f"prompt.{part}_file" if getattr(cfg.prompt, f"{part}_file") else f"prompt.{part}"
            raise ConfigError(path, key, "uses `references`, the gold answers: the model under test must not see them "
                              "(only judge templates get them)")
    leaked = [f for f in cfg.dataset.inputs or [] if f in cfg.dataset.references]
    if leaked:
        raise ConfigError(path, "dataset.inputs", f"{leaked[0]!r} is also a references field: the model under test "
                          "must not see the gold answers")


class _DuplicateKey(yaml.constructor.ConstructorError):
    """A mapping gives the same key twice."""

    def __init__(self, mapping: yaml.MappingNode, key: Any, node: yaml.Node, first: yaml.Node, root: yaml.Node | None):
        self.mapping, self.key, self.root = mapping, key, root
        self.line, self.first_line = node.start_mark.line + 1, first.start_mark.line + 1
        super().__init__(None, None, f"duplicate key {key!r} (first on line {self.first_line})", node.start_mark)


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, except that a mapping may not give a key
    twice (PyYAML keeps the last value silently: ``temperature: 0`` then
    ``temperature: 0.7`` would run at 0.7). Keys merged in with ``<<`` may
    still be overridden."""

    def construct_document(self, node):
        self._root = node
        return super().construct_document(node)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # an unhashable key: the base class reports it
                    continue
                if first is not key_node:
                    raise _DuplicateKey(node, key, key_node, first, getattr(self, "_root", None))
        return super().construct_mapping(node, deep)


def _key_path(root: yaml.Node | None, target: yaml.Node, key: Any) -> str:
    """The dotted path of ``key`` in mapping ``target`` under ``root``
    (e.g. ``params.temperature``, ``judges.tone.samples``, ``metrics[2]``)."""
    stack: list[tuple[yaml.Node, str]] = [(root, "")] if root is not None else []
    seen: set[int] = set()
    while stack:
        node, where = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node is target:
            return f"{where}.{key}" if where else str(key)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                name = k.value if isinstance(k, yaml.ScalarNode) else "?"
                stack.append((v, f"{where}.{name}" if where else str(name)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(node.value))
    return str(key)


def _load_yaml(text: str) -> Any:
    """``yaml.safe_load(text)`` refusing duplicate keys (raises :class:`_DuplicateKey`)."""
    loader = _UniqueKeyLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config (``yaml.safe_load`` semantics, except
    that a key given twice in one mapping, at any level, is an error).

    Paths inside the config resolve relative to the config file's folder.

    Raises:
        ConfigError: the file is missing, not YAML, gives a key twice (named
            with its dotted path and line), or fails validation; the message
            names the file and the offending key.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, None, "config file not found") from None
    except IsADirectoryError:
        raise ConfigError(path, None, "is a directory, expected a YAML file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(path, None, f"cannot read: {e}") from None
    try:
        data = _load_yaml(text)
    except _DuplicateKey as e:
        raise ConfigError(path, _key_path(e.root, e.mapping, e.key),
                          f"duplicate key on line {e.line} (first on line {e.first_line}); give each key once") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else None
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(path, where, f"invalid YAML: {problem}") from None
    return parse_config(data, path)
