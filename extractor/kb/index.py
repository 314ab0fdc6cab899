"""The index of existing claims: what a new extraction links to, enriches or duplicates.

Claims are found by title and stem; wiki links resolve against the stems of
every markdown file in the KB. Related claims for a source are ranked with
BM25 over titles and descriptions (:mod:`extractor.kb.ranking`).

Two ways to load it. Of a commit (``at``), for extraction: kept under the
state folder (``.extractor/index/``) and shared by the KB's processes, it is
brought from the commit it holds to the one asked for by ``git diff``, so a
reload after one commit costs what that commit changed, not what the KB
holds (a KB of 100,000 claims is read once per clone). Of the work tree (no
``at``), for ``validate`` and folders that are not repositories: in memory,
and a reload re-reads only the files whose modification time or size changed.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from pathlib import Path, PurePosixPath

from filelock import FileLock

from extractor.core.errors import ExtractorError
from extractor.kb import gitrepo
from extractor.kb.entities import EntityRef
from extractor.kb.entityschema import EntitySchema, load_entity_schema
from extractor.kb.notes import SKIP_DIRS as SKIP_DIRS
from extractor.kb.notes import ClaimRef as ClaimRef
from extractor.kb.notes import NoteRef, markdown_files, note_ref, read_note_ref, skipped
from extractor.kb.notetable import NoteTable, path_order
from extractor.kb.ranking import Ranking
from extractor.kb.statedir import ensure_state_dir
from extractor.kb.worktree import GitError

INDEX_DIR = "index"


class KBIndexError(ExtractorError):
    """The KB index under the state folder cannot be written (a full disk, a read-only folder): one line."""


log = logging.getLogger(__name__)


def _link_key(name: str) -> str:
    name = name.strip()
    if name.lower().endswith(".md"):
        name = name[:-3]
    return PurePosixPath(name).name


def claim_text(claim: ClaimRef) -> str:
    """What a claim is ranked by."""
    return f"{claim.title} {claim.description}"


def entity_text(entity: EntityRef) -> str:
    return f"{entity.name} {' '.join(entity.aliases)} {' '.join(entity.handles)} {entity.entity_type}"


class KBIndex:
    """Claims by path, title and stem, and the entity notes; lookups accept wiki-link spellings.

    Built from lists, it holds them in memory in the order given (the first
    of two claims with one title is the one found).
    """

    def __init__(
        self,
        root: Path,
        claims: list[ClaimRef],
        files: list[str] | None = None,
        entities: list[EntityRef] | None = None,
        entity_schema: EntitySchema | None = None,
    ) -> None:
        self.root = root
        self._entity_schema = entity_schema
        self._table = NoteTable()
        self._ranking = Ranking()
        self._entities: list[EntityRef] | None = None
        self._excluded: tuple[str, ...] = ()
        self._stamps: dict[str, tuple[int, int]] = {}  # work tree: what each file was when read
        self._stored = False  # of a commit, kept under the state folder
        self._at: str | None = None  # what names that commit (a branch, HEAD)
        paths = files if files is not None else [c.path for c in claims]
        notes: list[NoteRef] = [*claims, *(entities or [])]
        refs = [(f"{n:09d}", ref) for n, ref in enumerate(notes)]
        self._table.change([], [(path, f"{n:09d}") for n, path in enumerate(paths)], refs)
        self._ranking.replace([], [(claim.path, claim_text(claim)) for claim in claims])

    @property
    def entity_schema(self) -> EntitySchema:
        """The KB's entity type system (``schemas/entity.md``, or the built-in one), read once."""
        if self._entity_schema is None:
            self._entity_schema = load_entity_schema(self.root)
        return self._entity_schema

    @property
    def claims(self) -> list[ClaimRef]:
        """Every claim, in path order (read from the table: for evaluation and checks, not per source)."""
        return self._table.claims()

    @property
    def files(self) -> list[str]:
        """Every note's path (sources included: a link may name one), in path order."""
        return self._table.files()

    @property
    def entities(self) -> list[EntityRef]:
        if self._entities is None:
            self._entities = self._table.entities()
        return self._entities

    @property
    def commit(self) -> str | None:
        """The commit this index holds; None for a work tree's."""
        return self._table.get("commit") if self._stored else None

    @classmethod
    def load(
        cls, root: Path, exclude: list[str] | None = None, previous: KBIndex | None = None, at: str | None = None
    ) -> KBIndex:
        """The KB's index: of commit ``at`` (kept under the state folder) when given and the KB is a repository
        with that commit, else of the work tree. ``previous`` is brought up to date rather than built again.
        Notes under ``exclude`` (the inbox) are link targets, never claims."""
        excluded = tuple(f"{PurePosixPath(e).as_posix().strip('/')}/" for e in (exclude or []))
        commit = _commit(root, at) if at is not None else None
        stored = commit is not None
        if previous is not None and (previous.root, previous._excluded, previous._stored) == (root, excluded, stored):
            index = previous
        else:
            index = cls(root, [], [])
            index._excluded = excluded
            if stored:
                index._open_stored()
        if commit is not None:
            index._at = at
            index._sync_commit(commit)
        else:
            index._sync_tree()
        return index

    def _open_stored(self) -> None:
        """The index kept under the state folder, opened under its lock (the processes of a KB opening a new one
        together must not both make it, nor both switch it to WAL, which SQLite refuses at once rather than
        waiting); a damaged one is set aside and built again (git holds it all)."""
        folder = ensure_state_dir(self.root) / INDEX_DIR
        try:
            folder.mkdir(exist_ok=True)
            with FileLock(str(folder / "sync.lock")):
                self._open_tables(folder)
        except (sqlite3.Error, OSError, ValueError) as exc:
            raise KBIndexError(f"{folder}: cannot open the KB index: {exc}") from exc
        self._stored = True

    def _open_tables(self, folder: Path) -> None:
        try:
            self._table = NoteTable(folder / "notes.sqlite")
            self._ranking = Ranking(folder / "ranking")
        except sqlite3.DatabaseError as exc:
            if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) not in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
                raise
            log.warning(f"{folder}: the KB index is damaged ({exc}); building it again")
            for part in ("notes.sqlite", "notes.sqlite-wal", "notes.sqlite-shm"):
                (folder / part).unlink(missing_ok=True)
            shutil.rmtree(folder / "ranking", ignore_errors=True)
            self._table = NoteTable(folder / "notes.sqlite")
            self._ranking = Ranking(folder / "ranking")

    def refresh(self, paths: list[str]) -> None:
        """After a write: the work tree's files at ``paths`` read again, or a commit's index brought to the
        commit its branch has now."""
        if not paths:
            return
        if self._stored:
            commit = _commit(self.root, self._at or "HEAD")
            if commit is not None:
                self._sync_commit(commit)
            return
        self._apply(paths, {rel: _read_file(self.root, rel) for rel in paths})

    def _sync_tree(self) -> None:
        """Read the files whose modification time or size changed since the last load, drop the vanished."""
        seen: dict[str, tuple[int, int]] = {}
        changed: list[str] = []
        for rel, entry in markdown_files(self.root):
            try:
                info = entry.stat(follow_symlinks=True)
            except OSError:
                continue
            seen[rel] = (info.st_mtime_ns, info.st_size)
            if self._stamps.get(rel) != seen[rel]:
                changed.append(rel)
        gone = [rel for rel in self._stamps if rel not in seen]
        texts: dict[str, str | None] = {rel: None for rel in gone}
        texts.update((rel, _read_file(self.root, rel)) for rel in changed)
        self._apply(gone + changed, texts, stamps=seen)

    def _apply(
        self, paths: list[str], texts: dict[str, str | None], stamps: dict[str, tuple[int, int]] | None = None,
        commit: str | None = None, everything: bool = False,
    ) -> None:  # fmt: skip
        """Replace the notes at ``paths`` by ``texts`` (None: the file is gone)."""
        if not paths and not everything:
            if stamps is not None:
                self._stamps = stamps
            return
        files: list[tuple[str, str]] = []
        refs: list[tuple[str, NoteRef]] = []
        for rel in paths:
            text = texts.get(rel)
            if text is None or skipped(rel):
                continue
            files.append((rel, path_order(rel)))
            if not rel.startswith(self._excluded):
                refs.append((path_order(rel), note_ref(text, rel)))
        # The ranking reads titles and descriptions only: a change to a claim's body (an enrichment, an edit of
        # its argument) leaves it as it is, and spares a commit of the ranking's files.
        ranked_before = {} if everything else {p: claim_text(c) for p, c in self._table.claims_at(paths).items()}
        ranked = {ref.path: claim_text(ref) for _, ref in refs if isinstance(ref, ClaimRef)}
        dropped = [path for path in ranked_before if path not in ranked]
        changed = [(path, text) for path, text in ranked.items() if ranked_before.get(path) != text]
        if everything or dropped or changed:
            self._ranking.replace(dropped, changed, everything=everything)
        meta = {"commit": commit, "exclude": json.dumps(self._excluded)} if commit is not None else None
        self._table.change(paths, files, refs, meta=meta, everything=everything)
        self._entities = None
        if stamps is not None:
            self._stamps = stamps
        elif commit is None:
            for rel in paths:
                self._stamps.pop(rel, None)
                if (found := _stamp(self.root, rel)) is not None and texts.get(rel) is not None:
                    self._stamps[rel] = found

    def _sync_commit(self, commit: str) -> None:
        """Bring the stored index to ``commit``: by the diff from the commit it holds, under a lock other
        processes of the KB respect. One that holds a later commit of the same history is kept: newer notes
        only help a draft, and the writer plans against main as it is anyway."""
        folder = ensure_state_dir(self.root) / INDEX_DIR
        try:
            with FileLock(str(folder / "sync.lock")):
                self._follow(commit)
        except (sqlite3.Error, OSError, ValueError) as exc:  # tantivy says ValueError for its own I/O failures
            raise KBIndexError(f"{folder}: cannot bring the KB index to {commit[:12]}: {exc}") from exc

    def _follow(self, commit: str) -> None:
        """The stored index brought to ``commit`` (the lock held)."""
        held = self._table.get("commit")
        same_exclusions = self._table.get("exclude") == json.dumps(self._excluded)
        if same_exclusions and held is not None and gitrepo.descends_from(self.root, held, commit):
            self._ranking.reload()
            self._entities = None
            return
        base = held if same_exclusions else None
        try:
            changes = gitrepo.markdown_changes(self.root, base, commit)
        except (KeyError, ValueError, gitrepo.pygit2.GitError):  # the commit it held is gone (a gc, a rewrite)
            base, changes = None, gitrepo.markdown_changes(self.root, None, commit)
        texts = {path: gitrepo.blob_text(self.root, blob) if blob else None for path, blob in changes}
        self._apply([path for path, _ in changes], texts, commit=commit, everything=base is None)

    def resolve_link(self, target: str) -> tuple[str | None, bool]:
        """The file a wiki link points to, and whether it matched exactly (not by case folding).

        Accepts ``[[stem]]``, ``[[stem.md]]`` and ``[[some/path/stem]]``; a path that
        matches no file falls back to its last part.
        """
        name = target.strip()
        if name.lower().endswith(".md"):
            name = name[:-3]
        if "/" in name and (hit := self._table.file_by_path(name.casefold())):
            return hit, True
        stem = PurePosixPath(name).name
        if hit := self._table.file_by_stem(stem, folded=False):
            return hit, True
        if hit := self._table.file_by_stem(stem.casefold(), folded=True):
            return hit, False
        claim = self.resolve(stem)  # a link may spell a claim's title rather than its file name
        return (claim.path, False) if claim else (None, False)

    def related(self, query: str, k: int) -> list[ClaimRef]:
        """The ``k`` claims whose title and description best match ``query`` (BM25), one per title."""
        if k <= 0:
            return []
        paths = [path for path, _ in self._ranking.search(query, k * 2)]
        found = self._table.claims_at(paths)
        seen: set[str] = set()
        ranked = []
        for path in paths:
            claim = found.get(path)
            if claim is None or claim.title.casefold() in seen:
                continue
            seen.add(claim.title.casefold())
            ranked.append(claim)
        return ranked[:k]

    def related_entities(self, query: str, k: int, under: str = "") -> list[EntityRef]:
        """The ``k`` entity notes (under the folder ``under``) whose name, aliases and type best match ``query``."""
        entities = {e.path: e for e in self.entities if e.path.startswith(under)}
        if not entities or k <= 0:
            return []
        ranking = Ranking()
        ranking.replace([], [(path, entity_text(entity)) for path, entity in entities.items()])
        return [entities[path] for path, _ in ranking.search(query, k)]

    def resolve(self, name: str) -> ClaimRef | None:
        key = _link_key(name)
        return self._table.claim_named(key, folded=False) or self._table.claim_named(key.casefold(), folded=True)


def _commit(root: Path, at: str) -> str | None:
    """The commit ``at`` names in the repository at ``root``; None when there is none (no repository, none yet)."""
    try:
        return gitrepo.rev_parse(root, at)
    except GitError:
        return None


def _read_file(root: Path, rel: str) -> str | None:
    """A note's text; "" when it is not UTF-8 (still a link target), None when it cannot be read."""
    try:
        return (root / rel).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return ""
    except OSError:
        return None


def _stamp(root: Path, rel: str) -> tuple[int, int] | None:
    try:
        info = (root / rel).stat()
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size)


__all__ = ["SKIP_DIRS", "ClaimRef", "KBIndex", "markdown_files", "read_note_ref"]
