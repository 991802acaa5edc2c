"""Retrieval: corpus loading, chunking and BM25 ranking (the ``bm25s``
package: Lù, 2024, "BM25S: Orders of magnitude faster lexical search via eager
sparse scoring"; Lucene's BM25 variant, Robertson & Zaragoza 2009)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops_cli.config import Retrieval as RetrievalSpec
from llmops_cli.core.cache import memoised
from llmops_cli.core.files import read_records
from llmops_cli.core.errors import DatasetError

RETRIEVER_VERSION = "bm25s-english-stopwords/1"  # bump when tokenisation or ranking changes: memoised hits are keyed by it

Hits = list[list[tuple["Chunk", float]]]


@dataclass(frozen=True)
class Chunk:
    """A retrievable unit: ``id`` is ``<doc_id>`` for whole documents or
    ``<doc_id>#<n>`` for the n-th window of a document."""

    id: str
    doc_id: str
    text: str


def chunk_documents(docs: list[tuple[str, str]], mode: str = "document", size: int = 200, overlap: int = 0) -> list[Chunk]:
    """Split ``[(doc_id, text), ...]`` into chunks.

    ``mode="document"``: one chunk per document. ``mode="words"``: windows of
    ``size`` whitespace-separated words, each starting ``size - overlap`` words
    after the previous one.
    """
    if mode == "document":
        return [Chunk(d, d, t) for d, t in docs]
    step = size - overlap
    out = []
    for doc_id, text in docs:
        words = text.split()
        starts = range(0, max(len(words) - overlap, 1), step)
        for n, s in enumerate(starts):
            out.append(Chunk(f"{doc_id}#{n}", doc_id, " ".join(words[s : s + size])))
    return out


class BM25Retriever:
    """BM25 over a list of chunks (``bm25s``, English stop words removed,
    lowercased, no stemming). Scores are raw BM25 scores (unbounded, ≥ 0)."""

    def __init__(self, chunks: list[Chunk], k1: float = 1.5, b: float = 0.75):
        import bm25s

        if not chunks:
            raise ValueError("no chunks to index")
        self.chunks = chunks
        self._tokenizer = bm25s.tokenization.Tokenizer(stopwords="english")
        tokens = self._tokenizer.tokenize([c.text for c in chunks], show_progress=False, return_as="tuple")
        self._bm25 = bm25s.BM25(k1=k1, b=b)
        self._bm25.index(tokens, show_progress=False)

    def retrieve(self, queries: list[str], k: int) -> list[list[tuple[Chunk, float]]]:
        """Top-``k`` ``(chunk, score)`` pairs for each query, best first."""
        if not queries:
            return []
        k = min(k, len(self.chunks))
        q = self._tokenizer.tokenize(queries, update_vocab=False, show_progress=False, return_as="string")
        idx, scores = self._bm25.retrieve(q, k=k, show_progress=False)
        return [[(self.chunks[int(i)], float(s)) for i, s in zip(row_i, row_s)] for row_i, row_s in zip(idx, scores)]


def retrieve(spec: RetrievalSpec, chunks: list[Chunk], corpus_hash: str, queries: list[str], memo: Any = None) -> Hits:
    """Top-``spec.top_k`` ``(chunk, BM25 score)`` pairs per query, best first.

    ``memo`` (a :class:`~llmops_cli.core.cache.Cache`, or ``None``) keeps
    the hits under a hash of the retriever version, the installed ``bm25s``
    version, ``corpus_hash``, every retrieval setting and the queries; an
    identical re-run then reads them back without importing ``bm25s`` or
    building the index. Raises ``ValueError`` for an empty chunk list.
    """
    from importlib.metadata import version

    def rank() -> list[list[list[float]]]:  # [[chunk position, score], ...] per query: JSON for the memo
        index = {id(c): i for i, c in enumerate(chunks)}
        hits = BM25Retriever(chunks, spec.k1, spec.b).retrieve(queries, spec.top_k)
        return [[[index[id(c)], s] for c, s in row] for row in hits]

    inputs = [RETRIEVER_VERSION, version("bm25s"), corpus_hash, spec.model_dump(mode="json"), queries]
    return [[(chunks[i], s) for i, s in row] for row in memoised(memo, "retrieval", inputs, rank)]


def corpus_path(spec: RetrievalSpec, base_dir: Path) -> Path:
    """Where the corpus file is: ``spec.corpus``, relative to ``base_dir``."""
    path = Path(spec.corpus)
    return path if path.is_absolute() else base_dir / path


def load_corpus(spec: RetrievalSpec, base_dir: Path) -> tuple[list[Chunk], str]:
    """Read the corpus file and chunk it. Returns ``(chunks, corpus_hash)``
    where the hash is SHA-256 (16 hex digits) of the file's bytes.

    Raises:
        DatasetError: the corpus is missing, malformed (see
            :func:`~llmops_cli.core.files.read_records`), lacks the id/text
            fields, has an empty or duplicate id (named by its row), or is
            empty.
    """
    path = corpus_path(spec, base_dir)
    rows = read_records(path, None, "corpus")
    docs: list[tuple[str, str]] = []
    first_row: dict[str, int] = {}
    for n, row in enumerate(rows):
        for f in (spec.id_field, spec.text_field):
            if f not in row:
                raise DatasetError(path, f"row {n + 1}", f"missing field {f!r} (retrieval.{'id_field' if f == spec.id_field else 'text_field'})")
        if not isinstance(row[spec.text_field], str):
            raise DatasetError(path, f"row {n + 1}.{spec.text_field}", "expected a string")
        if row[spec.id_field] in (None, ""):
            raise DatasetError(path, f"row {n + 1}.{spec.id_field}", "empty id (retrieval.id_field)")
        doc_id = str(row[spec.id_field])
        if doc_id in first_row:
            raise DatasetError(path, f"row {n + 1}.{spec.id_field}",
                               f"duplicate id {doc_id!r} (first in row {first_row[doc_id]}); corpus ids must be unique")
        first_row[doc_id] = n + 1
        docs.append((doc_id, row[spec.text_field]))
    if not docs:
        raise DatasetError(path, None, "the corpus is empty")
    c = spec.chunking
    chunks = chunk_documents(docs, c.mode, c.size, c.overlap)
    try:
        with open(path, "rb") as fh:  # streamed: never a second whole copy of the file in memory
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError as e:
        raise DatasetError(path, None, f"cannot read corpus: {e.strerror or e}") from None
    return chunks, digest[:16]


def chunk_variables(hits: list[tuple[Chunk, float]]) -> dict[str, Any]:
    """Template variables for retrieved chunks: ``chunks`` and ``context``."""
    chunks: list[dict[str, Any]] = [{"id": c.id, "doc_id": c.doc_id, "text": c.text, "score": round(s, 4)} for c, s in hits]
    return {"chunks": chunks, "context": "\n\n".join(c["text"] for c in chunks)}
