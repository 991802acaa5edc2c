"""Corpus loading, chunking and BM25 ranking."""

from __future__ import annotations

import hashlib

import pytest

from llmops_cli.config import Chunking
from llmops_cli.config import Retrieval as RetrievalSpec
from llmops_cli.core.errors import DatasetError
from llmops_cli.core.cache import Cache
from llmops_cli.plan.retrieval import BM25Retriever, Chunk, chunk_documents, chunk_variables, load_corpus, retrieve

from conftest import CORPUS, write_jsonl


def _words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


# -- chunking -----------------------------------------------------------------

def test_document_mode_keeps_documents_whole():
    chunks = chunk_documents([("a", "one two"), ("b", "three")])
    assert chunks == [Chunk("a", "a", "one two"), Chunk("b", "b", "three")]


def test_word_windows_with_overlap():
    # size 4, overlap 1 -> windows start every 3 words: 0, 3, 6
    chunks = chunk_documents([("d", _words(10))], mode="words", size=4, overlap=1)
    assert [(c.id, c.doc_id, c.text) for c in chunks] == [
        ("d#0", "d", "w0 w1 w2 w3"),
        ("d#1", "d", "w3 w4 w5 w6"),
        ("d#2", "d", "w6 w7 w8 w9"),
    ]


def test_word_windows_ragged_end_and_several_docs():
    chunks = chunk_documents([("x", _words(8)), ("y", _words(3))], mode="words", size=4, overlap=1)
    assert [(c.id, c.text) for c in chunks] == [
        ("x#0", "w0 w1 w2 w3"),
        ("x#1", "w3 w4 w5 w6"),
        ("x#2", "w6 w7"),
        ("y#0", "w0 w1 w2"),  # shorter than one window: one chunk
    ]


@pytest.mark.parametrize("n, size, overlap", [(4, 4, 1), (7, 4, 1), (8, 4, 0), (9, 3, 2), (1, 5, 0), (25, 6, 3)])
def test_word_windows_cover_every_word_without_redundant_windows(n, size, overlap):
    chunks = chunk_documents([("d", _words(n))], mode="words", size=size, overlap=overlap)
    covered = set()
    step = size - overlap
    for k, c in enumerate(chunks):
        words = c.text.split()
        assert words == [f"w{i}" for i in range(k * step, min(k * step + size, n))]
        new = set(words) - covered
        assert new, f"window {c.id} adds no new words"
        covered |= set(words)
    assert covered == {f"w{i}" for i in range(n)}


def test_words_whitespace_is_normalised():
    (c,) = chunk_documents([("d", "a\n b\t\tc")], mode="words", size=10)
    assert c.text == "a b c"


# -- BM25 -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def retriever():
    return BM25Retriever(chunk_documents([(d["id"], d["text"]) for d in CORPUS]))


@pytest.mark.parametrize("query, best", [
    ("Who headlined the halftime show?", "halftime"),
    ("Who sang the national anthem?", "anthem"),
    ("Where was Super Bowl 50 played? Which stadium?", "venue"),
    ("most valuable player", "mvp"),
    ("PANTHERS", "broncos"),  # lowercased
])
def test_bm25_ranks_relevant_doc_first(retriever, query, best):
    (hits,) = retriever.retrieve([query], 3)
    assert hits[0][0].id == best
    scores = [s for _, s in hits]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0
    assert all(s >= 0 for s in scores)


def test_bm25_batch_and_k(retriever):
    res = retriever.retrieve(["halftime show", "national anthem"], 2)
    assert [[c.id for c, _ in hits][0] for hits in res] == ["halftime", "anthem"]
    assert all(len(hits) == 2 for hits in res)
    assert len(retriever.retrieve(["halftime"], 50)[0]) == len(CORPUS)  # k capped at the corpus size
    assert retriever.retrieve([], 2) == []


def test_bm25_needs_chunks():
    with pytest.raises(ValueError):
        BM25Retriever([])


def test_memoised_hits_equal_fresh_ones_and_follow_every_input(tmp_path, monkeypatch):
    write_jsonl(tmp_path / "corpus.jsonl", CORPUS)
    spec = RetrievalSpec(corpus="corpus.jsonl", top_k=2)
    chunks, h = load_corpus(spec, tmp_path)
    queries = ["Who headlined the halftime show?", "Who sang the national anthem?"]
    memo = Cache(tmp_path / "cache")
    fresh = retrieve(spec, chunks, h, queries, memo)
    assert fresh == BM25Retriever(chunks).retrieve(queries, 2)

    def no_bm25(*a, **k):
        raise AssertionError("BM25 index built on a memo hit")

    with monkeypatch.context() as m:
        m.setattr(BM25Retriever, "__init__", no_bm25)
        again = retrieve(spec, chunks, h, queries, memo)
    assert again == fresh and all(a[0] is b[0] for row_a, row_b in zip(again, fresh) for a, b in zip(row_a, row_b))
    # another setting, corpus hash or query misses the memo (and is ranked afresh)
    assert [len(r) for r in retrieve(spec.model_copy(update={"top_k": 3}), chunks, h, queries, memo)] == [3, 3]
    calls = []
    real_init = BM25Retriever.__init__
    monkeypatch.setattr(BM25Retriever, "__init__", lambda self, *a, **k: calls.append(1) or real_init(self, *a, **k))
    retrieve(spec, chunks, "another-corpus", queries, memo)
    retrieve(spec, chunks, h, queries[:1], memo)
    retrieve(spec.model_copy(update={"k1": 1.2}), chunks, h, queries, memo)
    assert len(calls) == 3


def test_chunk_variables():
    hits = [(Chunk("a#0", "a", "first"), 1.234567), (Chunk("b", "b", "second"), 0.5)]
    v = chunk_variables(hits)
    assert v["context"] == "first\n\nsecond"
    assert v["chunks"][0] == {"id": "a#0", "doc_id": "a", "text": "first", "score": 1.2346}


# -- corpus loading -------------------------------------------------------------

def test_load_corpus(tmp_path):
    p = write_jsonl(tmp_path / "corpus.jsonl", CORPUS)
    chunks, h = load_corpus(RetrievalSpec(corpus="corpus.jsonl"), tmp_path)
    assert [c.id for c in chunks] == [d["id"] for d in CORPUS]
    assert h == hashlib.sha256(p.read_bytes()).hexdigest()[:16]


def test_load_corpus_custom_fields_and_word_chunks(tmp_path):
    write_jsonl(tmp_path / "c.jsonl", [{"doc": 7, "body": _words(5)}])
    spec = RetrievalSpec(corpus="c.jsonl", id_field="doc", text_field="body", chunking=Chunking(mode="words", size=3, overlap=1))
    chunks, _ = load_corpus(spec, tmp_path)
    assert [(c.id, c.doc_id, c.text) for c in chunks] == [("7#0", "7", "w0 w1 w2"), ("7#1", "7", "w2 w3 w4")]


def test_corpus_missing_text_field(tmp_path):
    write_jsonl(tmp_path / "corpus.jsonl", [{"id": "a", "text": "ok"}, {"id": "b", "body": "no text"}])
    with pytest.raises(DatasetError) as ei:
        load_corpus(RetrievalSpec(corpus="corpus.jsonl"), tmp_path)
    assert ei.value.key == "row 2" and "missing field 'text'" in str(ei.value) and "retrieval.text_field" in str(ei.value)
    assert str(tmp_path / "corpus.jsonl") in str(ei.value)


def test_corpus_missing_id_field_and_non_string_text(tmp_path):
    write_jsonl(tmp_path / "corpus.jsonl", [{"text": "no id"}])
    with pytest.raises(DatasetError, match="retrieval.id_field"):
        load_corpus(RetrievalSpec(corpus="corpus.jsonl"), tmp_path)
    write_jsonl(tmp_path / "corpus.jsonl", [{"id": "a", "text": ["a", "list"]}])
    with pytest.raises(DatasetError, match="expected a string"):
        load_corpus(RetrievalSpec(corpus="corpus.jsonl"), tmp_path)


def test_corpus_missing_or_empty(tmp_path):
    with pytest.raises(DatasetError, match="corpus not found"):
        load_corpus(RetrievalSpec(corpus="nope.jsonl"), tmp_path)
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DatasetError, match="the corpus is empty"):
        load_corpus(RetrievalSpec(corpus="empty.jsonl"), tmp_path)
