"""Mechanical fixes of an extraction branch, made by the pipeline itself and deterministically: a wiki link
that resolves to no note is unlinked, a required field the path and the commit determine is filled in
(``type``, ``domain``, ``created``), and a timeline bullet with a recognisable date is rewritten as
``- **YYYY-MM-DD** — event``. Framing, confidence, evidence and domain are never touched: those are a
person's (or the proposer's) to change.

:func:`fix_file` is pure; the review stage reads the branch, calls it, and commits what changed.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from pathlib import PurePosixPath

from extractor.core.settings import Settings
from extractor.extraction.gates import unlink_where
from extractor.kb.layout import domain_of
from extractor.kb.yamlio import body_text, replace_frontmatter_keys, split_document

_TIMELINE = re.compile(r"^##\s+Timeline\s*$", re.IGNORECASE)
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`).+?(?<!`)\1(?!`)")
_GOOD_BULLET = re.compile(r"^- \*\*\d{4}-\d{2}-\d{2}\*\* — \S")
_LOOSE_BULLET = re.compile(r"^[-*+]\s+(?:\*\*|__)?(\d{4})-(\d{1,2})-(\d{1,2})(?:\*\*|__)?\s*(?:—|–|-{1,2}|:)\s*(\S.*)$")


def fix_timeline(body: str) -> tuple[str, int]:
    """Timeline bullets whose date can be read, rewritten in the schema's format; returns the body and how many.
    Lines inside code fences are left alone, and so is a bullet whose date is not a real day."""
    lines = body.split("\n")
    fixed = 0
    inside = False
    for number, (line, in_code) in enumerate(zip(lines, _in_fence(lines), strict=True)):
        if in_code:
            continue
        if line.startswith("#"):
            inside = bool(_TIMELINE.match(line))
            continue
        if not inside or _GOOD_BULLET.match(line):
            continue
        found = _LOOSE_BULLET.match(line)
        if found is None:
            continue
        year, month, day, event = found.groups()
        try:
            date = datetime.date(int(year), int(month), int(day))
        except ValueError:
            continue
        lines[number] = f"- **{date.isoformat()}** — {event.strip()}"
        fixed += 1
    return "\n".join(lines), fixed


def _in_fence(lines: list[str]) -> list[bool]:
    """For each line, whether it belongs to a fenced code block (the fence lines included)."""
    marks: list[bool] = []
    fence: str | None = None
    for line in lines:
        opened = _FENCE.match(line)
        if fence is None and opened:
            fence = opened.group(1)[0] * len(opened.group(1))
            marks.append(True)
        elif fence is not None:
            marks.append(True)
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                fence = None
        else:
            marks.append(False)
    return marks


def outside_code(body: str, change: Callable[[str], tuple[str, int]]) -> tuple[str, int]:
    """``change`` applied to the body's prose only: fenced blocks and inline code spans are left as written."""
    lines = body.split("\n")
    total = 0
    for number, (line, in_code) in enumerate(zip(lines, _in_fence(lines), strict=True)):
        if in_code:
            continue
        pieces: list[str] = []
        start = 0
        for span in _CODE_SPAN.finditer(line):
            prose, count = change(line[start : span.start()])
            pieces += [prose, span.group(0)]
            total, start = total + count, span.end()
        prose, count = change(line[start:])
        lines[number] = "".join([*pieces, prose])
        total += count
    return "\n".join(lines), total


def fix_file(
    path: str, text: str, kind: str, resolves: Callable[[str], bool], created: str, domain: str | None
) -> tuple[str, list[str]]:
    """The file with its mechanical problems fixed, and one note per kind of fix (none: unchanged).

    ``kind`` is "claim" or "entity"; ``created`` the date of the commit that added the file; ``domain`` the
    domain its folder names (None when the folder names none).
    """
    crlf = "\r\n" in text
    original, text = text, text.replace("\r\n", "\n")  # fixed as LF, written back with the file's endings
    try:
        metadata, _ = split_document(text)
    except Exception:  # noqa: BLE001 - a file whose frontmatter cannot be read is a person's to fix
        return original, []
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
    body = body_text(text)  # links in the frontmatter (depends_on) are data: only the body's are unlinked
    head = text[: len(text) - len(body)]
    body, unlinked = outside_code(body, lambda prose: unlink_where(prose, resolves))
    if unlinked:
        notes.append(f"{path}: unlinked {unlinked} wiki link(s) that resolve to no note")
    if kind == "entity":
        body, bullets = fix_timeline(body)
        if bullets:
            notes.append(f"{path}: rewrote {bullets} timeline bullet(s) as '- **YYYY-MM-DD** — event'")
    if not notes:
        return original, []
    fixed = head + body
    return (fixed.replace("\n", "\r\n") if crlf else fixed), notes


def folder_domain(path: str, settings: Settings) -> str | None:
    """The domain a file's folder names, if it is one of the KB's domains: an entity note's
    (``entities/<domain>/x.md``), or a claim's (its domain's claim folder, :func:`extractor.kb.layout.domain_of`)."""
    where = PurePosixPath(path)
    if where.is_relative_to(settings.entities_dir):
        parts = where.relative_to(settings.entities_dir).parts
        return parts[0] if len(parts) >= 2 and parts[0] in settings.domains else None
    return domain_of(path, settings)
