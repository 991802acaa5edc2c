"""The example's own check, named in llmops.yaml as
``python: checks.py:quote_in_paragraph``.

llmops calls it once per answer with the keyword arguments it declares
(``output``: the raw answer text; ``chunks``: the retrieved chunks, each
``{id, doc_id, text, score}``; ``inputs``: the case's input fields) and reads
``(score, reason)``: 1 passes, 0 fails with the reason shown in the report.
"""

from __future__ import annotations

import json


def _norm(text: str) -> str:
    """Whitespace collapsed to single spaces; case and punctuation kept."""
    return " ".join(text.split())


def quote_in_paragraph(output: str, inputs: dict, chunks: list[dict]) -> tuple[float, str | None]:
    """1 when the answer's ``quote`` occurs verbatim (case-sensitive, up to
    whitespace) in the text of a retrieved chunk; 0 with a reason otherwise
    — including an answer that is not a JSON object with a string quote."""
    try:
        data = json.loads(output)
    except ValueError as e:
        return 0.0, f"not JSON ({e.msg}), so no quote"
    quote = data.get("quote") if isinstance(data, dict) else None
    if quote is None:
        return 0.0, "no quote in the answer"
    if not isinstance(quote, str):
        return 0.0, f"the quote is {json.dumps(quote)[:40]}, not text"
    if not quote.strip():
        return 0.0, "the quote is empty"
    if not chunks:
        return 0.0, "nothing was retrieved to quote from"
    q = _norm(quote)
    if any(q in _norm(c["text"]) for c in chunks):
        return 1.0, None
    ids = [c.get("doc_id") or c["id"] for c in chunks]
    short = q if len(q) <= 50 else q[:49] + "…"
    why = f"quote {short!r} is not in the retrieved paragraph {', '.join(ids)}"
    if any(q.lower() in _norm(c["text"]).lower() for c in chunks):
        why += " (it is, ignoring case)"
    source = inputs.get("paragraph")
    if source and source not in ids:
        why += f"; the question is about {source}, which was not retrieved"
    return 0.0, why
