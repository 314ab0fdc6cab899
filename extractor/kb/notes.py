"""What the KB index knows of one note: a claim's or an entity note's reference, read from its text."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, Field

from extractor.kb.claims import ClaimParseError, parse_claim, wiki_links
from extractor.kb.entities import EntityRef, parse_entity

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


NoteRef = ClaimRef | EntityRef | None


def note_ref(text: str, rel: str) -> NoteRef:
    """A claim's or an entity note's reference from its text, or None for other notes."""
    if "type: entity" in text[:4000]:
        return parse_entity(rel, text)
    if "type: claim" not in text[:4000]:
        return None
    try:
        doc = parse_claim(text, fallback_title=PurePosixPath(rel).stem)
    except ClaimParseError:
        return None
    if doc.metadata.get("type") != "claim":
        return None
    return ClaimRef(
        path=rel,
        title=doc.title,
        domain=str(doc.metadata.get("domain") or ""),
        description=str(doc.metadata.get("description") or ""),
        links=wiki_links(text),
    )


def read_note_ref(path: Path, rel: PurePosixPath) -> NoteRef:
    """:func:`note_ref` of a file; None for unreadable files."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return note_ref(text, str(rel))


def skipped(rel: str) -> bool:
    """A path inside a tool's folder (``.git``, ``.extractor``, ``node_modules``, ``.venv``), at any depth."""
    return any(part in SKIP_DIRS for part in rel.split("/")[:-1])


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
