"""How the run record's per-case models are held compactly in memory, while
their JSON stays as it was: a raw response as its compact JSON text
(:class:`RawJSON`), and one fields-set shared by every instance of a model
(:class:`PerCaseModel`), and one float object per distinct score value
(:func:`shared_float`). At 10,000 cases the first two took a loaded case from
8.8 to 5.1 KB and a gated run's peak RSS down by 37 MB.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Annotated, Any

import pydantic_core
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, PlainSerializer, model_validator


class RecordModel(BaseModel):
    """The base of the run record's models: unknown keys ignored (records
    written by a newer llmops still load)."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())


class RawJSON(Mapping):
    """A JSON object kept as its compact JSON text (``text``, bytes): a
    provider's raw response takes ~600 bytes so, against ~2.6 KB as nested
    dicts (8 MB less peak RSS in a 10,000-case run). Reads as a read-only
    mapping (``raw["choices"][0]``, ``raw.get("model")``), each read parsing
    the text; serialises as the object it holds, so records are unchanged on
    disk."""

    __slots__ = ("text",)

    def __init__(self, value: Mapping | bytes):
        self.text = value if isinstance(value, bytes) else pydantic_core.to_json(dict(value))

    def data(self) -> dict[str, Any]:
        """The object, parsed afresh (a new dict each call)."""
        return json.loads(self.text)

    def __getitem__(self, key: str) -> Any:
        return self.data()[key]

    def __iter__(self):
        return iter(self.data())

    def __len__(self) -> int:
        return len(self.data())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return self.data() == (other.data() if isinstance(other, RawJSON) else dict(other))

    def __repr__(self) -> str:
        return f"RawJSON({self.text.decode(errors='replace')})"


def _raw_json(value: Any) -> RawJSON | None:
    if value is None or isinstance(value, RawJSON):
        return value
    if isinstance(value, Mapping):
        return RawJSON(value)
    raise ValueError("expected a JSON object")


# a JSON object held as RawJSON: validated from a mapping, dumped (python or JSON) as a plain dict
CompactObject = Annotated[Any, BeforeValidator(_raw_json),
                          PlainSerializer(lambda v: v.data() if isinstance(v, RawJSON) else v)]


MAX_SHARED_FLOATS = 1 << 16
_FLOATS: dict[float, float] = {}


def shared_float(x: float) -> float:
    """``x`` as the one float object this process holds for its value: a
    case's scores and corpus statistics repeat few values (BLEU's statistics
    are token counts; exact match, checks and many F1s are 0 or 1), and each
    float object is 24 bytes. The same value and type, so records, JSON and
    comparisons are unchanged. NaN, -0.0 and values past the first
    :data:`MAX_SHARED_FLOATS` distinct ones are returned as they are."""
    if x != x or (x == 0 and math.copysign(1.0, x) < 0):
        return x
    y = _FLOATS.get(x)
    if y is None:
        if len(_FLOATS) >= MAX_SHARED_FLOATS:
            return x
        _FLOATS[x] = y = x
    return y


# a float validated (from a record file) into its shared object
SharedFloat = Annotated[float, AfterValidator(shared_float)]


class PerCaseModel(RecordModel):
    """A model there is one of (or several) per case. Every instance shares
    one ``__pydantic_fields_set__`` naming all its fields, instead of a set
    of its own (~730 bytes each, two or more per case in each record: 29 MB
    less peak RSS in a gated 10,000-case run). Records are always dumped whole
    (nothing here uses ``exclude_unset``), so "every field set" loses
    nothing; assigning a field adds a name already in the set."""

    @classmethod
    def all_fields(cls) -> set[str]:
        """The fields-set every instance of ``cls`` shares (pass it as
        ``_fields_set`` to ``model_construct``)."""
        shared = _ALL_FIELDS.get(cls)
        if shared is None:
            shared = _ALL_FIELDS[cls] = set(cls.model_fields)
        return shared

    @model_validator(mode="after")
    def _share_fields_set(self):
        object.__setattr__(self, "__pydantic_fields_set__", type(self).all_fields())
        return self


_ALL_FIELDS: dict[type, set[str]] = {}


class FrozenMap(Mapping):
    """A small read-only mapping held as two tuples, its keys' tuple shared by
    every map with the same keys in the same order: a case's scores (metric →
    0–1 score or None), corpus statistics or reasons, where a dict of four
    entries takes 184 bytes and is repeated per case. Equal to a dict with
    the same items; ``dict(m)`` makes a plain one."""

    __slots__ = ("_keys", "_values")
    _SHARED: dict[tuple, tuple] = {}

    def __init__(self, data: Mapping | None = None):
        data = data or {}
        keys = tuple(data)
        self._keys = self._SHARED.setdefault(keys, keys) if len(self._SHARED) < MAX_SHARED_FLOATS else keys
        self._values = tuple(data.values())

    def __getitem__(self, key: Any) -> Any:
        try:
            return self._values[self._keys.index(key)]
        except ValueError:
            raise KeyError(key) from None

    def get(self, key: Any, default: Any = None) -> Any:
        keys = self._keys
        return self._values[keys.index(key)] if key in keys else default

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def items(self):  # type: ignore[override]
        return zip(self._keys, self._values)

    def values(self):  # type: ignore[override]
        return iter(self._values)

    def __repr__(self) -> str:
        return f"FrozenMap({dict(zip(self._keys, self._values))!r})"


def frozen(data: Mapping) -> FrozenMap:
    """``data`` as a :class:`FrozenMap` (the one empty map when it is empty)."""
    return FrozenMap(data) if data else EMPTY


EMPTY = FrozenMap()
