"""Recorded runs on disk: a source as the pipeline found it and the claims people accepted from it.

The layout is one folder per run (``<source-slug>@<commit>/``) holding ``before.md`` (the source),
``added/`` (the files the run created, as accepted) and ``modified-before/``/``modified-after/`` (the
files it edited). Claims are the ``type: claim`` files under ``added/``, new entities its ``type: entity``
files, entity updates the bullets its edits added; anything unreadable is left out and counted.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, Field

from extractor.kb.claims import ClaimParseError, parse_claim
from extractor.kb.entities import parse_entity, timeline_events
from extractor.kb.sources import Source, SourceError, load_source
from extractor.kb.yamlio import split_document

# Frontmatter the pipeline writes itself, or that the answer gives in its own fields.
_OWN_KEYS = {"type", "entity_type", "name", "domain", "status", "tracked_by", "created", "summary", "last_updated",
             "secondary_domains"}  # fmt: skip
_FULL_DATE = r"\d{4}-\d{2}-\d{2}"


class AcceptedClaim(BaseModel):
    stem: str  # the file name without .md: how the labels name a claim
    title: str
    description: str
    answer: dict[str, object]  # the claim as a model's answer would give it


class AcceptedEntity(BaseModel):
    path: str  # where people accepted the new note, relative to the KB
    name: str
    answer: dict[str, object]  # the note as a model's answer would give it


class RecordedRun(BaseModel):
    name: str
    source: Source
    accepted: list[AcceptedClaim]
    entities: list[AcceptedEntity] = Field(default_factory=list)
    entity_updates: list[dict[str, object]] = Field(default_factory=list, description="accepted edits of entity "
                                                    "notes, as the model's updates")  # fmt: skip
    unreadable: list[str] = Field(default_factory=list, description="added files that are not readable claims, "
                                  "each with the reason")  # fmt: skip

    @property
    def slug(self) -> str:
        return self.name.split("@", 1)[0]


def as_answer(text: str) -> tuple[str, str, dict[str, object]]:
    """An accepted claim file as the model's answer for it: title, description and the answer's claim.

    A file without an ``## Evidence`` list (the older job wrote some) gives its argument's first paragraph
    as its one evidence item, whole, so no markup is cut in half.
    """
    document = parse_claim(text)
    description = str(document.metadata.get("description") or "")
    first_paragraph = document.argument.strip().split("\n\n", 1)[0].strip()
    claim: dict[str, object] = {
        "title": document.title,
        "description": description,
        "confidence": str(document.metadata.get("confidence") or ""),
        "evidence": document.evidence or ([first_paragraph] if first_paragraph else []),
        "argument": document.argument,
        "limitations": document.limitations,
        "secondary_domains": [],
        "related": [],
    }
    return document.title, description, claim


def _summary(body: str) -> str:
    """The first paragraph of prose under the title (or under its first section), as one line."""
    for block in body.split("\n\n"):
        block = block.strip()
        if block and not block.startswith(("#", "-", "|", "*", ">", "```")):
            return " ".join(block.split())
    return ""


def as_entity_answer(text: str, stem: str) -> dict[str, object] | None:
    """An accepted entity note as the model's answer for it (None when it is not an entity note): its name,
    its file name as the short name, type, status, summary, the type's scalar fields, the full-dated events
    of its timeline and nothing for related claims (its links name notes, not claim titles)."""
    ref = parse_entity(f"{stem}.md", text)
    if ref is None:
        return None
    metadata, body = split_document(text)
    summary = str(metadata.get("summary") or "") or _summary(body)
    fields = [
        f"{key}: {value}"
        for key, value in metadata.items()
        if key not in _OWN_KEYS and isinstance(value, str | int | float) and not isinstance(value, bool)
        and str(value).strip()
    ]  # fmt: skip
    return {
        "name": ref.name,
        "short_name": stem,
        "entity_type": ref.entity_type,
        "status": ref.status,
        "summary": summary,
        "fields": fields,
        "timeline": [
            {"date": e.date, "text": e.text} for e in timeline_events(body) if re.fullmatch(_FULL_DATE, e.date)
        ],
        "related": [],
    }


def as_update_answer(before: str, after: str) -> dict[str, object] | None:
    """An accepted edit of an entity note as the model's update: the full-dated bullets it added, the status
    it changed. None for an edit that is neither (or of a note that is not an entity)."""
    old, new = parse_entity("before.md", before), parse_entity("after.md", after)
    if old is None or new is None:
        return None
    known = {(e.date, e.text) for e in timeline_events(split_document(before)[1])}
    added = [e for e in timeline_events(split_document(after)[1]) if (e.date, e.text) not in known]
    events = [{"date": e.date, "text": e.text} for e in added if re.fullmatch(_FULL_DATE, e.date)]
    status = new.status if new.status != old.status else None
    if not events and status is None:
        return None
    return {"name": old.name, "status": status, "timeline": events}


def load_run(folder: Path) -> RecordedRun:
    """One run; raises :class:`SourceError` when its ``before.md`` cannot be read as a source."""
    source = load_source(folder / "before.md")
    accepted: list[AcceptedClaim] = []
    entities: list[AcceptedEntity] = []
    unreadable: list[str] = []
    added = folder / "added"
    for path in sorted(added.rglob("*.md")) if added.is_dir() else []:
        relative = path.relative_to(folder).as_posix()
        try:
            text = path.read_text(encoding="utf-8")
            if "type: entity" in text.split("\n---", 1)[0]:
                drafted = as_entity_answer(text, path.stem)
                if drafted is not None:
                    entities.append(AcceptedEntity(path=path.relative_to(added).as_posix(), name=str(drafted["name"]),
                                                   answer=drafted))  # fmt: skip
                continue
            if "type: claim" not in text.split("\n---", 1)[0]:
                continue  # a map, a source: not a claim
            title, description, claim = as_answer(text)
        except UnicodeDecodeError as exc:
            unreadable.append(f"{relative}: not UTF-8 text (byte {exc.start})")
            continue
        except OSError as exc:
            unreadable.append(f"{relative}: cannot read: {exc.strerror or exc}")
            continue
        except ClaimParseError as exc:
            unreadable.append(f"{relative}: not a readable claim: {exc}")
            continue
        accepted.append(AcceptedClaim(stem=path.stem, title=title, description=description, answer=claim))
    return RecordedRun(name=folder.name, source=source, accepted=accepted, entities=entities,
                       entity_updates=accepted_updates(folder), unreadable=unreadable)  # fmt: skip


def accepted_updates(folder: Path) -> list[dict[str, object]]:
    """The run's edits of entity notes (``modified-before`` to ``modified-after``) as the model's updates."""
    before_root, after_root = folder / "modified-before", folder / "modified-after"
    updates = []
    for before in sorted(before_root.rglob("*.md")) if before_root.is_dir() else []:
        after = after_root / before.relative_to(before_root)
        try:
            update = as_update_answer(before.read_text(encoding="utf-8"), after.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
        if update is not None:
            updates.append(update)
    return updates


def load_runs(folder: Path) -> tuple[list[RecordedRun], list[str]]:
    """Every run under ``folder`` that has a source, in name order, and one line per run or claim file left out."""
    runs: list[RecordedRun] = []
    problems: list[str] = []
    for path in sorted(p for p in folder.iterdir() if p.is_dir()):
        if not (path / "before.md").is_file():
            problems.append(f"{path.name}: no before.md")
            continue
        try:
            run = load_run(path)
        except SourceError as exc:
            problems.append(f"{path.name}: {exc}")
            continue
        runs.append(run)
        problems += [f"{path.name}/{line}" for line in run.unreadable]
    return runs, problems
