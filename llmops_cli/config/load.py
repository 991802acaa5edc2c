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

from llmops_cli.core.errors import ConfigError
from llmops_cli.core.files import LONE_SURROGATE, lone_surrogate_key
from llmops_cli.config.models import Config


def _validation_message(err: ValidationError) -> tuple[str | None, str]:
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
    """Validate already-loaded YAML data: structure only (see :func:`load_config`).
    Raises :class:`ConfigError`."""
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
    return cfg


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

    Structure only: no user code is imported, no plugin loaded and no file but
    the YAML read, so it is safe on an untrusted file. What needs code or other
    files (prompt files, templates, metric plugins, judge templates, checks) is
    made ready by :func:`llmops_cli.measure.prepare.prepare`, which ``validate``
    and ``eval`` call before any model call.

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
        bad = lone_surrogate_key(data)  # YAML's "\ud800" escape: a string UTF-8 cannot hold
        if bad is not None:
            raise ConfigError(path, bad or None, LONE_SURROGATE)
        return parse_config(data, path)
    except RecursionError:  # the YAML parser and the models recurse with the nesting: bad input, not a crash
        raise ConfigError(path, None, "nested too deeply to read") from None
    except _DuplicateKey as e:
        raise ConfigError(path, _key_path(e.root, e.mapping, e.key),
                          f"duplicate key on line {e.line} (first on line {e.first_line}); give each key once") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else None
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(path, where, f"invalid YAML: {problem}") from None
