"""A configuration's identity: canonical JSON, SHA-256, the config
fingerprint (what decides the answers) and the config diff between two
snapshots (what changed, answered or measured).

Public API: :func:`fingerprint`, :func:`config_diff`, :func:`canonical_json`,
:func:`sha256_text`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

IDENTITY_KEYS = ("model", "api_base", "params", "prompt", "retrieval", "repeats")
MEASUREMENT_KEYS = ("metrics", "judges", "checks", "embedding")  # shown by config_diff; of the judges, only their effective block is identity
# settings that change no answer: shown by config_diff, left out of the fingerprint
NOT_IDENTITY = {"params": ("timeout",), "retrieval": ("corpus",)}


def canonical_json(obj: Any) -> str:
    """Stable JSON text: sorted keys, no whitespace, UTF-8 kept."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def key_order(obj: Any) -> Any:
    """The order of the keys of every mapping inside ``obj`` (nested lists
    of ``[key, order of its value]``), or None when ``obj`` holds no
    mapping: :func:`canonical_json` sorts keys, but in a JSON Schema given
    as ``response_format`` the order of ``properties`` is the order the
    model writes the fields in, so identities that must see it add this."""
    if isinstance(obj, dict):
        return [[k, key_order(v)] for k, v in obj.items()]
    if isinstance(obj, list):
        inner = [key_order(v) for v in obj]
        return inner if any(x is not None for x in inner) else None
    return None


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _without(d: Any, keys: tuple[str, ...]) -> Any:
    return {k: v for k, v in d.items() if k not in keys} if isinstance(d, dict) else d


def fingerprint(snapshot: dict[str, Any], corpus_hash: str | None = None) -> str:
    """Config fingerprint: SHA-256 (first 16 hex digits) of the canonical JSON
    of model, api_base, params (but ``timeout``), prompt text, retrieval setup
    (but the corpus *path*), repeats, the retrieval corpus's content hash, the
    deployments' models and the fallbacks' (when set; not their URLs or keys:
    see :func:`_routes`), and
    each judge's effective model, api_base, params (but ``timeout``) and
    template hash (``snapshot["judges"][name]["effective"]``, see
    :meth:`Config.snapshot`). Eval set, metrics, the judges' other settings,
    gate and baseline path are not part of it: they are how the configuration
    is *measured*; nor are the timeout and corpus path, which change no answer."""
    ident = {k: _without(snapshot.get(k), NOT_IDENTITY.get(k, ())) for k in IDENTITY_KEYS}
    ident["corpus_hash"] = corpus_hash
    ident.update(_routes(snapshot))
    order = {k: key_order(v) for k, v in (ident.get("params") or {}).items() if isinstance(v, (dict, list))}
    if any(v is not None for v in order.values()):  # the order of response_format's properties is the order of answers
        ident["params_key_order"] = order
    ident["judges"] = {name: {**j["effective"], "params": _without(j["effective"].get("params"), ("timeout",))}
                       for name, j in sorted((snapshot.get("judges") or {}).items())
                       if isinstance(j, dict) and isinstance(j.get("effective"), dict)}
    return sha256_text(canonical_json(ident))[:16]


def _routes(snapshot: dict[str, Any]) -> dict[str, Any]:
    """What of ``deployments`` and ``fallbacks`` decides the answers: the
    set of the deployments' model strings (sorted; a deployment without one
    serves the logical model) and the fallbacks' models in order — never
    their URLs, keys, names or limits, which do not change what answers.
    Empty when neither is set, so other configs keep their fingerprints."""
    out: dict[str, Any] = {}
    deployments = snapshot.get("deployments") or []
    if deployments:
        out["deployments"] = sorted({(d.get("model") if isinstance(d, dict) else None) or snapshot.get("model")
                                     for d in deployments})
    fallbacks = [f.get("model") for f in snapshot.get("fallbacks") or [] if isinstance(f, dict)]
    if fallbacks:
        out["fallbacks"] = fallbacks
    return out


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = d
    return out


def _short(v: Any, width: int = 60) -> str:
    s = json.dumps(v, ensure_ascii=False) if not isinstance(v, (int, float)) or isinstance(v, bool) else repr(v)
    if v is None:
        s = "—"
    return s if len(s) <= width else s[: width - 1] + "…"


def _judge_view(j: Any) -> Any:
    """A judge's snapshot as :func:`config_diff` shows it: the declared
    settings with the effective model, api_base and params over them, and the
    template hash shortened to 12 hex digits."""
    if not isinstance(j, dict) or not isinstance(j.get("effective"), dict):
        return j
    eff = dict(j["effective"])
    sha = eff.pop("template_sha256", None)
    view = {**{k: v for k, v in j.items() if k != "effective"}, **eff}
    if sha:
        view["template_sha256"] = sha[:12]
    return view


def _diff_view(snapshot: dict[str, Any]) -> dict[str, Any]:
    view = {k: snapshot.get(k) for k in IDENTITY_KEYS + MEASUREMENT_KEYS}
    for key in ("deployments", "fallbacks"):  # one entry per item: deployments[0].api_base, ...
        for i, item in enumerate(snapshot.get(key) or []):
            view[f"{key}[{i}]"] = item
    if isinstance(judges := view.get("judges"), dict):
        view["judges"] = {name: _judge_view(j) for name, j in judges.items()}
    return _flatten(view)


def config_diff(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """What changed between two config snapshots — what is answered and how
    it is measured — one line per key, e.g. ``params.temperature: 0.0 → 0.7``
    or, for a judge that follows the model under test,
    ``judges.correctness.model: "openai/a" → "openai/b"`` (judges show their
    effective model, api_base, params and ``template_sha256``, first 12 hex
    digits). ``params.timeout`` and ``retrieval.corpus`` (the path) are shown
    too, though the fingerprint leaves them out. ``[]`` when ``old`` is empty."""
    if not old:
        return []
    a = _diff_view(old)
    b = _diff_view(new)
    lines = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            lines.append(f"{key}: {_short(a.get(key))} → {_short(b.get(key))}")
    return lines
