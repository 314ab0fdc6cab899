"""What an extraction did to entity notes, as a reviewer reads it: each new note with its timeline, and for
each updated note the bullets it gained. Pure: the caller reads the two versions of each file."""

from __future__ import annotations

from typing import Literal

from extractor.core.records import Record
from extractor.kb.entities import parse_entity, timeline_bullets
from extractor.kb.yamlio import split_document


class EntityChange(Record):
    path: str
    change: Literal["new", "update"]
    name: str
    entity_type: str
    status: str
    timeline: list[str]  # the note's timeline bullets after the change, in file order
    added: list[str]  # the bullets this extraction added (all of them, for a new note)
    decision: str | None = None  # why the pipeline made it new or an update, when the report recorded it


def _bullets(text: str | None) -> list[str]:
    if text is None:
        return []
    try:
        return timeline_bullets(split_document(text)[1])
    except ValueError:
        return []


def entity_change(path: str, before: str | None, after: str | None, decisions: list[str]) -> EntityChange | None:
    """One entity note's change; None when the file is no entity note on the branch (or was deleted)."""
    ref = parse_entity(path, after) if after is not None else None
    if ref is None:
        return None
    old = set(_bullets(before))
    timeline = _bullets(after)
    decision = next((line for line in decisions if path in line or f'"{ref.name}"' in line), None)
    return EntityChange(
        path=path,
        change="new" if before is None else "update",
        name=ref.name,
        entity_type=ref.entity_type,
        status=ref.status,
        timeline=timeline,
        added=[bullet for bullet in timeline if bullet not in old],
        decision=decision,
    )
