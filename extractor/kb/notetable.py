"""The KB index's table of notes: every note by path and stem, claims and entity notes by title.

A SQLite file under the state folder (or in memory): lookups are indexed
queries, so a KB of 100,000 claims is neither read nor held in dictionaries
by each process, and a change touches only its own rows. ``order`` is the
order in which two notes with one stem or title are found: the first wins,
as in a walk of the KB in path order (folders before the files after them).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from extractor.kb.entities import EntityRef
from extractor.kb.notes import ClaimRef, NoteRef
from extractor.kb.statedir import BUSY_TIMEOUT_MS

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    ord TEXT NOT NULL,
    stem TEXT NOT NULL,
    stem_folded TEXT NOT NULL,
    path_folded TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS files_stem ON files(stem, ord);
CREATE INDEX IF NOT EXISTS files_stem_folded ON files(stem_folded, ord);
CREATE INDEX IF NOT EXISTS files_path_folded ON files(path_folded, ord);
CREATE TABLE IF NOT EXISTS refs (
    path TEXT PRIMARY KEY,
    ord TEXT NOT NULL,
    kind TEXT NOT NULL,
    stem TEXT NOT NULL,
    stem_folded TEXT NOT NULL,
    title TEXT NOT NULL,
    title_folded TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS refs_stem ON refs(kind, stem, ord);
CREATE INDEX IF NOT EXISTS refs_title ON refs(kind, title, ord);
CREATE INDEX IF NOT EXISTS refs_stem_folded ON refs(kind, stem_folded, ord);
CREATE INDEX IF NOT EXISTS refs_title_folded ON refs(kind, title_folded, ord);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
DROP = "DROP TABLE IF EXISTS files; DROP TABLE IF EXISTS refs; DROP TABLE IF EXISTS meta"
VERSION = "1"  # a table written by another layout is built again


def path_order(path: str) -> str:
    """Sorts as the path's parts do: ``a/b.md`` before ``a-b.md``, as a walk of folders finds them."""
    return path.replace("/", "\x01")


def _stem_path(path: str) -> str:
    return path[:-3] if path.endswith(".md") else path


class NoteTable:
    """Notes by path, stem and title; ``path`` None keeps them in memory."""

    def __init__(self, path: Path | None = None) -> None:
        self.db = sqlite3.connect(":memory:" if path is None else path, timeout=BUSY_TIMEOUT_MS / 1000,
                                  isolation_level=None, check_same_thread=False)  # fmt: skip
        if path is not None:
            self.db.execute("PRAGMA synchronous = NORMAL")
            if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self.db.execute("PRAGMA journal_mode = WAL")
        if self._version() != VERSION:  # nothing is written when the table is as this code reads it
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")  # executescript would commit it: one statement at a time
                if self._version() != VERSION:  # another process may have made it while this one waited
                    for statement in [*DROP.split(";"), *SCHEMA.split(";")]:
                        if statement.strip():
                            self.db.execute(statement)
                    self.set("version", VERSION)

    def _version(self) -> str | None:
        try:
            return self.get("version")
        except sqlite3.OperationalError:  # no such table: a new file
            return None

    def close(self) -> None:
        self.db.close()

    def get(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def change(
        self,
        removed: Iterable[str],
        files: Iterable[tuple[str, str]],
        refs: Iterable[tuple[str, NoteRef]],
        meta: dict[str, str] | None = None,
        everything: bool = False,
    ) -> None:
        """In one transaction: drop ``removed`` paths, add ``files`` (path, order) and ``refs`` (order, ref)."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            if everything:
                self.db.execute("DELETE FROM files")
                self.db.execute("DELETE FROM refs")
            gone = [(path,) for path in removed]
            self.db.executemany("DELETE FROM files WHERE path = ?", gone)
            self.db.executemany("DELETE FROM refs WHERE path = ?", gone)
            self.db.executemany(
                "INSERT OR REPLACE INTO files (path, ord, stem, stem_folded, path_folded) VALUES (?, ?, ?, ?, ?)",
                [(path, order, (stem := _stem_path(path).rsplit("/", 1)[-1]), stem.casefold(),
                  _stem_path(path).casefold()) for path, order in files],
            )  # fmt: skip
            self.db.executemany(
                "INSERT OR REPLACE INTO refs (path, ord, kind, stem, stem_folded, title, title_folded, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [_ref_row(order, ref) for order, ref in refs if ref is not None],
            )
            for key, value in (meta or {}).items():
                self.set(key, value)

    # lookups

    def file_by_path(self, stem_path_folded: str) -> str | None:
        return self._one("SELECT path FROM files WHERE path_folded = ? ORDER BY ord LIMIT 1", stem_path_folded)

    def file_by_stem(self, stem: str, folded: bool) -> str | None:
        column = "stem_folded" if folded else "stem"
        return self._one(f"SELECT path FROM files WHERE {column} = ? ORDER BY ord LIMIT 1", stem)

    def claim_named(self, key: str, folded: bool) -> ClaimRef | None:
        """The first claim whose stem or title is ``key`` (both case-folded when ``folded``)."""
        stem, title = ("stem_folded", "title_folded") if folded else ("stem", "title")
        row = self.db.execute(
            f"SELECT data, ord FROM refs WHERE kind = 'claim' AND {stem} = ?1 UNION ALL "
            f"SELECT data, ord FROM refs WHERE kind = 'claim' AND {title} = ?1 ORDER BY ord LIMIT 1",
            (key,),
        ).fetchone()
        return ClaimRef.model_validate_json(row[0]) if row else None

    def claims_at(self, paths: list[str]) -> dict[str, ClaimRef]:
        found: dict[str, ClaimRef] = {}
        for start in range(0, len(paths), 500):
            chunk = paths[start : start + 500]
            marks = ",".join("?" * len(chunk))
            # By the primary key alone: with the kind in the query, SQLite may walk a kind index instead.
            for path, kind, data in self.db.execute(
                f"SELECT path, kind, data FROM refs WHERE path IN ({marks})", chunk
            ):
                if kind == "claim":
                    found[path] = ClaimRef.model_validate_json(data)
        return found

    def claims(self) -> list[ClaimRef]:
        rows = self.db.execute("SELECT data FROM refs WHERE kind = 'claim' ORDER BY ord")
        return [ClaimRef.model_validate_json(data) for (data,) in rows]

    def entities(self) -> list[EntityRef]:
        rows = self.db.execute("SELECT data FROM refs WHERE kind = 'entity' ORDER BY path")
        return [EntityRef.model_validate_json(data) for (data,) in rows]

    def files(self) -> list[str]:
        return [path for (path,) in self.db.execute("SELECT path FROM files ORDER BY ord")]

    def claim_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM refs WHERE kind = 'claim'").fetchone()[0])

    def _one(self, sql: str, value: str) -> str | None:
        row = self.db.execute(sql, (value,)).fetchone()
        return str(row[0]) if row else None


def _ref_row(order: str, ref: ClaimRef | EntityRef) -> tuple[str, ...]:
    stem = _stem_path(ref.path).rsplit("/", 1)[-1]
    if isinstance(ref, ClaimRef):
        return (ref.path, order, "claim", stem, stem.casefold(), ref.title, ref.title.casefold(),
                ref.model_dump_json())  # fmt: skip
    return (ref.path, order, "entity", stem, stem.casefold(), ref.name, ref.name.casefold(), ref.model_dump_json())
