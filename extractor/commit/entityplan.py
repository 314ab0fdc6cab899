"""Entity notes in a plan: new notes' full texts, and timeline bullets (and a changed status) put into notes
the KB has, every other byte of those kept.

Pure apart from reading the KB through the plan's view. ``--force`` takes back exactly what an earlier
extraction of the same source wrote: the bullets its commits added to other notes (and, with its claims, the
notes it created).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePosixPath

from pydantic import BaseModel, Field

from extractor.commit.message import parse_message
from extractor.extraction.entity_drafts import EntityOutcome, EntityUpdate, NewEntity
from extractor.kb.claims import safe_markdown
from extractor.kb.entities import TIMELINE_BULLET, EntityNote, add_events, render_entity
from extractor.kb.names import unique_name
from extractor.kb.views import KBView
from extractor.kb.yamlio import replace_frontmatter_keys, split_document

Read = Callable[[str], str | None]


class EntityPlan(BaseModel):
    texts: dict[str, str | None] = Field(default_factory=dict)
    created: list[str] = Field(default_factory=list)
    updated: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


def as_list(value: object) -> list[str]:
    """A frontmatter value that should be a list (a string, a list, nothing), as a list of strings."""
    if isinstance(value, list):
        return [str(v) for v in value if v]
    return [str(value)] if value else []


def take_back(metadata: dict[str, object], source_path: str, view: KBView, read: Read, trailer_key: str) -> EntityPlan:
    """The timeline bullets this source's extractions added to entity notes, taken out for ``--force``: only
    lines its own commits added, so a bullet a person wrote stays. (The notes it created are deleted with its
    claims: :func:`extractor.extraction.extract.previous_drafts` names both.)"""
    plan = EntityPlan()
    for path in as_list(metadata.get("entities_updated")):
        text = read(path)
        if text is None:
            continue
        ours: list[str] = []
        for edit in view.lines_added_to(path):
            info = parse_message(edit.message, trailer_key)
            if info is not None and info.source == source_path:
                ours += [line for line in edit.added if TIMELINE_BULLET.match(line.strip())]
        if ours:
            plan.texts[path] = _without_lines(text, ours)
    return plan


def _without_lines(text: str, lines: list[str]) -> str:
    """The text without one occurrence of each of ``lines`` (compared whole, line endings aside)."""
    newline = "\r\n" if "\r\n" in text else "\n"
    kept = text.split(newline)
    for line in lines:
        for position, existing in enumerate(kept):
            if existing.rstrip() == line.rstrip():
                del kept[position]
                break
    return newline.join(kept)


def plan_entities(
    outcome: EntityOutcome,
    *,
    entities_dir: str,
    domain: str,
    agent: str,
    today: str,
    names_in: Callable[[str], frozenset[str]],
    read: Read,
) -> EntityPlan:
    """New notes at ``<entities_dir>/<domain>/<slug>.md`` (a free name: never over another file) and updates."""
    plan = EntityPlan()
    folder = str(PurePosixPath(entities_dir) / domain)
    taken = {name.casefold() for name in names_in(folder)}
    for entity in outcome.created:
        path = f"{folder}/{unique_name(entity.slug, taken)}"
        plan.texts[path] = render_entity(_note(entity, domain, agent, today))
        plan.created.append(path)
    for update in outcome.updated:
        text = plan.texts.get(update.target.path) or read(update.target.path)
        if text is None:
            plan.notes.append(f"kept {update.target.path} as it is: it is gone from the branch the drafts are based on")
            continue
        changed = _updated(text, update, today)
        if changed != text:
            plan.texts[update.target.path] = changed
            plan.updated.append(update.target.path)
    return plan


def _note(entity: NewEntity, domain: str, agent: str, today: str) -> EntityNote:
    fields: dict[str, str | list[str]] = {key: value for key, value in entity.fields.items()}
    related = [*([entity.parent] if entity.parent else []), *(ref.stem for ref in entity.related)]
    return EntityNote(
        name=entity.name,
        entity_type=entity.entity_type,
        domain=domain,
        status=entity.status,
        tracked_by=agent,
        created=today,
        fields=fields,
        summary=safe_markdown(entity.summary),
        events=[event.model_copy(update={"text": safe_markdown(event.text)}) for event in entity.events],
        related=list(dict.fromkeys(related)),
    )


def _updated(text: str, update: EntityUpdate, today: str) -> str:
    """The note with the update's new bullets in date order; its status (and ``last_updated``) and secondary
    domains changed only when the update changes them."""
    events = [event.model_copy(update={"text": safe_markdown(event.text)}) for event in update.events]
    text, _ = add_events(text, events)
    keys: dict[str, object] = {}
    metadata, _ = split_document(text)
    if update.status and update.status.casefold() != str(metadata.get("status") or "").casefold():
        keys.update(status=update.status, last_updated=today)
    if update.secondary_domain:
        secondary = as_list(metadata.get("secondary_domains"))
        if update.secondary_domain not in secondary and update.secondary_domain != metadata.get("domain"):
            keys["secondary_domains"] = [*secondary, update.secondary_domain]
    return replace_frontmatter_keys(text, keys) if keys else text
