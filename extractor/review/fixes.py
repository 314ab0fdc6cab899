"""Mechanical fixes of an extraction branch, made by the pipeline itself and deterministically: a wiki link
that resolves to no note is unlinked, a required field the path and the commit determine is filled in
(``type``, ``domain``, ``created``), and a timeline bullet with a recognisable date is rewritten as
``- **YYYY-MM-DD** — event``. Framing, confidence, evidence and domain are never touched: those are a
person's (or the proposer's) to change.

:func:`fix_file` is pure; the review stage reads the branch, calls it, and commits what changed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import PurePosixPath

from extractor.extraction.gates import unlink_where
from extractor.kb.yamlio import replace_frontmatter_keys, split_document

_TIMELINE = re.compile(r"^##\s+Timeline\s*$", re.IGNORECASE)
_GOOD_BULLET = re.compile(r"^- \*\*\d{4}-\d{2}-\d{2}\*\* — \S")
_LOOSE_BULLET = re.compile(r"^[-*+]\s+(?:\*\*|__)?(\d{4})-(\d{1,2})-(\d{1,2})(?:\*\*|__)?\s*(?:—|–|-{1,2}|:)\s*(\S.*)$")


def fix_timeline(body: str) -> tuple[str, int]:
    """Timeline bullets whose date can be read, rewritten in the schema's format; returns the body and how many."""
    lines = body.split("\n")
    fixed = 0
    inside = False
    for number, line in enumerate(lines):
        if line.startswith("#"):
            inside = bool(_TIMELINE.match(line))
            continue
        if not inside or _GOOD_BULLET.match(line):
            continue
        found = _LOOSE_BULLET.match(line)
        if found is None:
            continue
        year, month, day, event = found.groups()
        if not (1 <= int(month) <= 12 and 1 <= int(day) <= 31):
            continue
        lines[number] = f"- **{year}-{int(month):02d}-{int(day):02d}** — {event.strip()}"
        fixed += 1
    return "\n".join(lines), fixed


def fix_file(
    path: str, text: str, kind: str, resolves: Callable[[str], bool], created: str, domain: str | None
) -> tuple[str, list[str]]:
    """The file with its mechanical problems fixed, and one note per kind of fix (none: unchanged).

    ``kind`` is "claim" or "entity"; ``created`` the date of the commit that added the file; ``domain`` the
    domain its folder names (None when the folder names none).
    """
    try:
        metadata, _ = split_document(text)
    except Exception:  # noqa: BLE001 - a file whose frontmatter cannot be read is a person's to fix
        return text, []
    notes: list[str] = []
    missing: dict[str, str] = {}
    if not metadata.get("type"):
        missing["type"] = kind
    if not metadata.get("domain") and domain:
        missing["domain"] = domain
    if not metadata.get("created"):
        missing["created"] = created
    if missing:
        text = replace_frontmatter_keys(text, missing)
        notes.append(f"{path}: filled in {', '.join(missing)}")
    head, separator, body = _split_body(text)
    body, unlinked = unlink_where(body, resolves)
    if unlinked:
        notes.append(f"{path}: unlinked {unlinked} wiki link(s) that resolve to no note")
    if kind == "entity":
        body, bullets = fix_timeline(body)
        if bullets:
            notes.append(f"{path}: rewrote {bullets} timeline bullet(s) as '- **YYYY-MM-DD** — event'")
    return head + separator + body, notes


def _split_body(text: str) -> tuple[str, str, str]:
    """Frontmatter (with its closing line) and body, so links in the frontmatter (``depends_on``) stay as they
    are: a list of titles there is data, not links to unlink."""
    match = re.match(r"\A---\r?\n.*?\r?\n---\r?\n", text, re.DOTALL)
    if match is None:
        return "", "", text
    return match.group(0), "", text[match.end() :]


def folder_domain(path: str, root: str, domains: list[str]) -> str | None:
    """The domain a file's folder names (``claims/<domain>/x.md``), if it is one of the KB's domains."""
    relative = PurePosixPath(path).relative_to(root) if PurePosixPath(path).is_relative_to(root) else None
    if relative is None or len(relative.parts) < 2:
        return None
    return relative.parts[0] if relative.parts[0] in domains else None
