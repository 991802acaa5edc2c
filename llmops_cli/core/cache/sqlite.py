"""The local cache: SQLite in ``<dir>/responses.sqlite`` (WAL mode; safe
with concurrent runs), the default when no Redis URL is given.

Location: ``--cache-dir`` or ``$LLMOPS_CACHE_DIR``, default ``.llmops/cache``.
Stores what :mod:`llmops_cli.core.cache` describes: answers (table ``responses``)
and memoised derived results (table ``memo``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from llmops_cli.core.errors import OutputError

DEFAULT_DIR = ".llmops/cache"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, model TEXT NOT NULL, value TEXT NOT NULL, created REAL NOT NULL)",
    # memoised derived results (metric results, retrieval hits, bootstrap intervals) keyed by a hash of all
    # their inputs: safe to clear
    "CREATE TABLE IF NOT EXISTS memo (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)",
)


def _set_up(conn: sqlite3.Connection, wait_s: float = 30.0) -> None:
    """WAL mode and the tables. Two processes creating the same database at
    once can get "database is locked" here at once, without SQLite's busy
    timeout applying (switching the journal mode takes an exclusive lock):
    retried for up to ``wait_s`` seconds."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            for stmt in _SCHEMA:
                conn.execute(stmt)
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def default_dir() -> Path:
    """``$LLMOPS_CACHE_DIR``, else :data:`DEFAULT_DIR`."""
    return Path(os.environ.get("LLMOPS_CACHE_DIR") or DEFAULT_DIR)


class Cache:
    """The cache in ``<dir>/responses.sqlite``: answers (table ``responses``)
    and memoised derived results (table ``memo``; :func:`memoised`).

    ``get(key)`` returns the stored dict or ``None``; ``put(key, model, value)``
    stores a JSON-serialisable dict (committed at once, so an interrupted run
    keeps every completed answer). Counts ``hits`` and ``misses``.

    Every method raises :class:`~llmops_cli.core.errors.OutputError` naming the
    database when the cache cannot be used: a read-only or full disk, a folder
    that cannot be created, a file that is not a database. :meth:`open` checks
    that up front.
    """

    def __init__(self, directory: str | Path | None = None):
        self.dir = Path(directory) if directory else default_dir()
        self.path = self.dir / "responses.sqlite"
        self.hits = 0
        self.misses = 0
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn SQLite and OS errors into an :class:`OutputError` naming the database."""
        try:
            yield
        except OutputError:
            raise
        except (sqlite3.Error, OSError) as e:
            from llmops_cli.core.files import check_writable

            try:
                check_writable(self.path, "cache")
            except OutputError as found:
                raise found from None
            reason = getattr(e, "strerror", None) or str(e)
            raise OutputError(self.path, "cache", f"cannot use the response cache: {reason} (--cache-dir or "
                              "$LLMOPS_CACHE_DIR picks another folder; --no-cache skips it)") from None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            with self._guard():
                self.dir.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
                try:
                    _set_up(conn)
                except BaseException:
                    conn.close()
                    raise
                self._conn = conn
        return self._conn

    def open(self) -> "Cache":
        """Open (creating it if needed) the database and take a write lock
        once, so that a cache that cannot be written fails now — before any
        model call — rather than after the first paid answer.

        Raises:
            OutputError: the cache cannot be created or written; names it.
        """
        with self._lock:
            db = self._db()
            with self._guard():
                db.execute("BEGIN IMMEDIATE")
                db.execute("ROLLBACK")
        return self

    def get(self, key: str) -> dict[str, Any] | None:
        if not self.path.exists() and self._conn is None:
            self.misses += 1
            return None
        with self._lock, self._guard():
            row = self._db().execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(row[0])

    def put(self, key: str, model: str, value: dict[str, Any]) -> None:
        text = json.dumps(value, ensure_ascii=False)
        with self._lock, self._guard():
            self._db().execute(
                "INSERT OR REPLACE INTO responses (key, model, value, created) VALUES (?, ?, ?, ?)",
                (key, model, text, time.time()),
            )

    def get_memo(self, key: str) -> Any:
        """A memoised derived result — a metric's results, retrieval hits, a
        bootstrap interval — stored under a key that hashes everything it
        depends on; ``None`` if absent. Not counted as a response hit or miss."""
        if not self.path.exists() and self._conn is None:
            return None
        with self._lock, self._guard():
            row = self._db().execute("SELECT value FROM memo WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put_memo(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable derived result under ``key``."""
        with self._lock, self._guard():
            self._db().execute("INSERT OR REPLACE INTO memo (key, value, created) VALUES (?, ?, ?)",
                               (key, json.dumps(value), time.time()))

    def info(self) -> dict[str, Any]:
        """``{path, entries, bytes, models: {model: entries}, memo: {kind: entries}}``
        — ``entries`` counts cached responses, ``memo`` the memoised derived
        results by kind (``retrieval``, ``bootstrap``, or a metric name)."""
        if not self.path.exists():
            return {"path": str(self.path), "entries": 0, "bytes": 0, "models": {}, "memo": {}}
        with self._lock, self._guard():
            rows = self._db().execute("SELECT model, COUNT(*) FROM responses GROUP BY model").fetchall()
            memo = self._db().execute("SELECT substr(key, 1, instr(key, ':') - 1) AS kind, COUNT(*) FROM memo "
                                      "GROUP BY kind").fetchall()
        size = sum(p.stat().st_size for p in self.dir.glob("responses.sqlite*"))
        return {"path": str(self.path), "entries": sum(n for _, n in rows), "bytes": size, "models": dict(rows),
                "memo": dict(memo)}

    def clear(self) -> int:
        """Delete every entry; returns how many were deleted."""
        if not self.path.exists():
            return 0
        with self._lock, self._guard():
            n = self._db().execute("DELETE FROM responses").rowcount
            self._db().execute("DELETE FROM memo")
            self._db().execute("VACUUM")
        return n

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
