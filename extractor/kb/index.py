"""The index of existing claims: what a new extraction links to, enriches or duplicates.

Claims are found by title and stem; wiki links resolve against the stems of
every markdown file in the KB. Related claims for a source are ranked with
BM25 (``bm25s``) over titles and descriptions.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import bm25s
from bm25s.tokenization import Tokenizer
from pydantic import BaseModel, Field

from extractor.kb.claims import ClaimParseError, parse_claim, wiki_links
from extractor.kb.entities import EntityRef, parse_entity
from extractor.kb.entityschema import EntitySchema, load_entity_schema

SKIP_DIRS = {".git", ".extractor", "node_modules", ".venv"}


class ClaimRef(BaseModel):
    path: str  # relative to the KB root, POSIX separators
    title: str
    domain: str = ""
    description: str = ""
    links: list[str] = Field(default_factory=list)

    @property
    def stem(self) -> str:
        return PurePosixPath(self.path).stem


def _link_key(name: str) -> str:
    name = name.strip()
    if name.lower().endswith(".md"):
        name = name[:-3]
    return PurePosixPath(name).name


class KBIndex:
    """Claims by path, title and stem, and the entity notes; lookups accept wiki-link spellings."""

    def __init__(
        self,
        root: Path,
        claims: list[ClaimRef],
        files: list[str] | None = None,
        entities: list[EntityRef] | None = None,
        entity_schema: EntitySchema | None = None,
    ) -> None:
        self.root = root
        self.files = files if files is not None else [c.path for c in claims]
        self.entities = entities or []
        self._entity_schema = entity_schema
        # What each file was when read (modification time, size) and what it gave: a later load reads only
        # the files that changed since.
        self._read: dict[str, tuple[tuple[int, int], NoteRef]] = {}
        self._build(claims)

    @property
    def entity_schema(self) -> EntitySchema:
        """The KB's entity type system (``schemas/entity.md``, or the built-in one), read once."""
        if self._entity_schema is None:
            self._entity_schema = load_entity_schema(self.root)
        return self._entity_schema

    def _build(self, claims: list[ClaimRef]) -> None:
        self.claims = claims
        self._retriever: tuple[Tokenizer, bm25s.BM25] | None = None
        self._stems: dict[str, str] = {}
        self._stems_folded: dict[str, str] = {}
        self._paths: dict[str, str] = {}
        for rel in self.files:  # string operations, not PurePosixPath: this runs after every write
            stem_path = rel[:-3] if rel.endswith(".md") else rel
            self._paths.setdefault(stem_path.casefold(), rel)
            stem = stem_path.rsplit("/", 1)[-1]
            self._stems.setdefault(stem, rel)
            self._stems_folded.setdefault(stem.casefold(), rel)
        self._exact: dict[str, ClaimRef] = {}
        self._folded: dict[str, ClaimRef] = {}
        for claim in claims:
            for key in (claim.stem, claim.title):
                self._exact.setdefault(key, claim)
                self._folded.setdefault(key.casefold(), claim)

    @classmethod
    def load(cls, root: Path, exclude: list[str] | None = None, previous: KBIndex | None = None) -> KBIndex:
        """Every claim under ``root``; files unchanged since ``previous`` was loaded are not read again."""
        excluded = tuple(f"{PurePosixPath(e).as_posix().strip('/')}/" for e in (exclude or []))
        known = previous._read if previous is not None and previous.root == root else {}
        read: dict[str, tuple[tuple[int, int], NoteRef]] = {}
        claims: list[ClaimRef] = []
        entities: list[EntityRef] = []
        files: list[str] = []
        # In path order, part by part, as before: the first of two notes with one stem is the one a link finds.
        for rel, entry in sorted(markdown_files(root), key=lambda item: item[0].split("/")):
            files.append(rel)  # every note can be a link target, sources included
            if rel.startswith(excluded):
                continue
            try:
                info = entry.stat(follow_symlinks=True)
            except OSError:
                continue
            stamp = (info.st_mtime_ns, info.st_size)
            stamp_then, ref = known.get(rel, (None, None))
            if stamp_then != stamp:
                ref = read_note_ref(Path(entry.path), PurePosixPath(rel))
            read[rel] = (stamp, ref)
            if isinstance(ref, ClaimRef):
                claims.append(ref)
            elif isinstance(ref, EntityRef):
                entities.append(ref)
        index = cls(root, claims, files, entities)
        index._read = read
        if previous is not None and _same_objects(previous.claims, claims):
            index._retriever = previous._retriever  # the same claims: the same ranking
        return index

    def refresh(self, paths: list[str]) -> None:
        """Re-read these files after a write (new, changed or deleted claims)."""
        if not paths:
            return
        touched = set(paths)
        claims = [c for c in self.claims if c.path not in touched]
        entities = [e for e in self.entities if e.path not in touched]
        self.files = [f for f in self.files if f not in touched]
        for rel in paths:
            file = self.root / rel
            if file.is_file() and rel.endswith(".md"):
                self.files.append(rel)
                ref = read_note_ref(file, PurePosixPath(rel))
                if isinstance(ref, ClaimRef):
                    claims.append(ref)
                elif isinstance(ref, EntityRef):
                    entities.append(ref)
        self.entities = sorted(entities, key=lambda e: e.path)
        self._build(claims)

    def resolve_link(self, target: str) -> tuple[str | None, bool]:
        """The file a wiki link points to, and whether it matched exactly (not by case folding).

        Accepts ``[[stem]]``, ``[[stem.md]]`` and ``[[some/path/stem]]``; a path that
        matches no file falls back to its last part.
        """
        name = target.strip()
        if name.lower().endswith(".md"):
            name = name[:-3]
        if "/" in name and (hit := self._paths.get(name.casefold())):
            return hit, True
        stem = PurePosixPath(name).name
        if hit := self._stems.get(stem):
            return hit, True
        if hit := self._stems_folded.get(stem.casefold()):
            return hit, False
        claim = self.resolve(stem)  # a link may spell a claim's title rather than its file name
        return (claim.path, False) if claim else (None, False)

    def related(self, query: str, k: int) -> list[ClaimRef]:
        """The ``k`` claims whose title and description best match ``query`` (BM25)."""
        if not self.claims or k <= 0:
            return []
        if self._retriever is None:
            tokenizer = Tokenizer(stopwords="en", stemmer=None)
            tokens = tokenizer.tokenize(
                [f"{c.title} {c.description}" for c in self.claims], show_progress=False, return_as="ids"
            )
            retriever = bm25s.BM25()
            retriever.index(tokens, show_progress=False)
            self._retriever = (tokenizer, retriever)
        tokenizer, retriever = self._retriever
        query_tokens = tokenizer.tokenize([query], update_vocab=False, show_progress=False, return_as="ids")
        if not any(query_tokens[0]):
            return []
        # n_threads=0: in the calling thread (bm25s starts a thread pool per call for any other value).
        found, scores = retriever.retrieve(
            query_tokens, k=min(len(self.claims), k * 2), show_progress=False, n_threads=0
        )
        seen: set[str] = set()
        ranked = []
        for position, score in zip(found[0], scores[0], strict=True):
            claim = self.claims[int(position)]
            if score <= 0 or claim.title.casefold() in seen:
                continue
            seen.add(claim.title.casefold())
            ranked.append(claim)
        return ranked[:k]

    def related_entities(self, query: str, k: int, under: str = "") -> list[EntityRef]:
        """The ``k`` entity notes (under the folder ``under``) whose name, aliases and type best match ``query``."""
        entities = [e for e in self.entities if e.path.startswith(under)]
        if not entities or k <= 0:
            return []
        tokenizer = Tokenizer(stopwords="en", stemmer=None)
        texts = [f"{e.name} {' '.join(e.aliases)} {' '.join(e.handles)} {e.entity_type}" for e in entities]
        retriever = bm25s.BM25()
        retriever.index(tokenizer.tokenize(texts, show_progress=False, return_as="ids"), show_progress=False)
        query_tokens = tokenizer.tokenize([query], update_vocab=False, show_progress=False, return_as="ids")
        if not any(query_tokens[0]):
            return []
        found, scores = retriever.retrieve(query_tokens, k=min(len(entities), k), show_progress=False, n_threads=0)
        return [entities[int(p)] for p, score in zip(found[0], scores[0], strict=True) if score > 0]

    def resolve(self, name: str) -> ClaimRef | None:
        key = _link_key(name)
        return self._exact.get(key) or self._folded.get(key.casefold())


def _same_objects(before: list[ClaimRef], after: list[ClaimRef]) -> bool:
    """Every claim reused as it was, in the same order: nothing the ranking depends on changed."""
    return len(before) == len(after) and all(a is b for a, b in zip(before, after, strict=True))


def markdown_files(root: Path, prefix: str = "") -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Every ``*.md`` below ``root`` (its path relative to root, POSIX, and its entry), skipping tool folders.

    Walks with ``os.scandir`` and string paths: a KB of 100,000 files is walked again at every reload.
    """
    try:
        entries = list(os.scandir(root if not prefix else root / prefix))
    except OSError:
        return
    for entry in entries:
        rel = f"{prefix}{entry.name}"
        try:
            is_dir = entry.is_dir(follow_symlinks=False)  # a linked folder is not walked into
        except OSError:
            continue
        if is_dir:
            if entry.name not in SKIP_DIRS:
                yield from markdown_files(root, f"{rel}/")
        elif entry.name.endswith(".md"):
            yield rel, entry


NoteRef = ClaimRef | EntityRef | None


def read_note_ref(path: Path, rel: PurePosixPath) -> NoteRef:
    """A claim's or an entity note's reference, or None for other notes and unreadable files."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if "type: entity" in text[:4000]:
        return parse_entity(str(rel), text)
    if "type: claim" not in text[:4000]:
        return None
    try:
        doc = parse_claim(text, fallback_title=path.stem)
    except ClaimParseError:
        return None
    if doc.metadata.get("type") != "claim":
        return None
    return ClaimRef(
        path=str(rel),
        title=doc.title,
        domain=str(doc.metadata.get("domain") or ""),
        description=str(doc.metadata.get("description") or ""),
        links=wiki_links(text),
    )
