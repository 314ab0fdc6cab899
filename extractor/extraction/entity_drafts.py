"""Drafted entities judged and reconciled with the KB's entity notes: no writes.

One entity per real-world object: a draft naming an entity the KB already has (by name, alias, handle or
file name, any case or punctuation, near spellings) becomes an update of that note, and two drafts of one
object merge. Every timeline date must be one the source states (or its own date), every figure and
quotation grounded as in claims; what is not is removed and said so. Each decision (new, update, merged,
dropped) is written down for the reviewer.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from extractor.core.records import Flag
from extractor.extraction.answer import EntityDraft, EntityUpdateDraft, EventDraft
from extractor.extraction.gates import unlink_unresolved
from extractor.extraction.grounding import SourceFacts, check_text, dates_in
from extractor.extraction.prompts import ANSWER_FIELDS
from extractor.kb.claims import WIKI_LINK
from extractor.kb.entities import EntityRef, TimelineEvent, entity_slug, find_entity, name_key
from extractor.kb.entityschema import EntitySchema
from extractor.kb.index import ClaimRef, KBIndex

MAX_NAME_WORDS = 10
MAX_TITLE_WORDS = 30  # a decision market is named by its proposal's title, a question at times
_HANDLE = re.compile(r"^@?[a-z][a-z0-9_.-]{2,38}$")
# Small words a proper name may hold in lower case ("Bank of America", "Ludwig van Beethoven").
_CONNECTORS = frozenset("of the and for de la le du von van der den di da y & on in at to a an".split())
MAX_LOWERCASE_WORDS = 2  # "The DAO decided to reject the trade" describes; it does not name
_DETERMINER = re.compile(r"^(?:the|a|an|this|that|these|those|our|their|its)\s+", re.IGNORECASE)
_ABBREVIATION_END = re.compile(r"\b(?:inc|ltd|co|corp|jr|sr|st|l\.l\.c|s\.a)\.$", re.IGNORECASE)
_DATE_FIELD = re.compile(r"(?:^|_)(?:date|founded|launched|launch_date|created)$")


class EntityDecision(BaseModel):
    """What became of one drafted entity or update, in words a reviewer reads."""

    name: str
    outcome: str  # new | update | merged | dropped
    reason: str


class NewEntity(BaseModel):
    """A new entity note to write."""

    name: str
    short_name: str
    entity_type: str
    status: str
    summary: str
    fields: dict[str, str] = Field(default_factory=dict)
    events: list[TimelineEvent] = Field(default_factory=list)
    related: list[ClaimRef] = Field(default_factory=list)
    parent: str | None = Field(default=None, description="a decision market's parent entity: its file stem")
    flags: list[Flag] = Field(default_factory=list)

    @property
    def slug(self) -> str:
        return entity_slug(self.short_name or self.name, self.parent)


class EntityUpdate(BaseModel):
    """New timeline events (and a changed status) for an entity note the KB has."""

    target: EntityRef
    events: list[TimelineEvent] = Field(default_factory=list)
    status: str | None = None
    secondary_domain: str | None = Field(default=None, description="the source's domain, when the note's differs")
    flags: list[Flag] = Field(default_factory=list)

    @property
    def name(self) -> str:
        return self.target.name


class EntityOutcome(BaseModel):
    created: list[NewEntity] = Field(default_factory=list)
    updated: list[EntityUpdate] = Field(default_factory=list)
    decisions: list[EntityDecision] = Field(default_factory=list)
    unlinked: int = Field(default=0, description="wiki links in their text that resolve to no note, unlinked")
    refused: list[tuple[str, Flag]] = Field(default_factory=list, description="flags of updates dropped whole")

    def flags_by_name(self) -> list[tuple[str, list[Flag]]]:
        return [(e.name, e.flags) for e in self.created] + [(u.name, u.flags) for u in self.updated]

    def complaints(self) -> list[tuple[str, Flag]]:
        """Every item the gates removed or flagged, with its entity's name: what the labels judge."""
        kept = [(name, flag) for name, flags in self.flags_by_name() for flag in flags]
        return kept + self.refused


def proper_name_problem(name: str, entity_type: str) -> str | None:
    """Why a drafted name is not a proper name (a sentence, a generic noun), or None when it is one.

    A decision market is named by its proposal's title (a question at times); a person may go by a handle,
    written in lower case ("joebuild"); anything else needs a capital letter or a figure past any article.
    """
    words = name.split()
    limit = MAX_TITLE_WORDS if entity_type == "decision_market" else MAX_NAME_WORDS
    if len(words) > limit:
        return f"{len(words)} words: a sentence, not a name"
    if name.endswith((".", "!")) and not _ABBREVIATION_END.search(name):
        return "ends like a sentence"
    if entity_type == "person" and _HANDLE.match(name):
        return None
    content = [word for word in words if word.casefold().strip(".,:;") not in _CONNECTORS]
    lowercase = [word for word in content if word[:1].islower()]
    if entity_type != "decision_market" and len(lowercase) > MAX_LOWERCASE_WORDS:
        return f"{len(lowercase)} words in lower case: a description, not a name"
    if entity_type != "decision_market" and len(content) >= 3 and len(content) - len(lowercase) <= 1:
        return "one capital, at the start: a phrase, not a name"
    rest = _DETERMINER.sub("", name)
    if not any(ch.isupper() or ch.isdigit() for ch in rest):
        return "no capital letter or figure: a generic noun, not a name"
    return None


_STATUS_WORD = re.compile(r"[a-z]{3,20}")


def status_problem(status: str, allowed: list[str]) -> tuple[str, bool] | None:
    """What is wrong with a drafted status, and whether it is fatal: a word the schema does not list is kept
    and flagged ("declining"); anything else ("lack of a financial incentive...") is no status."""
    if status.casefold() in allowed:
        return None
    listed = ", ".join(allowed)
    if _STATUS_WORD.fullmatch(status.casefold()):
        return f"the status {status!r} is not one the schema lists ({listed})", False
    return f"{status!r} is not a status (the schema's: {listed})", True


_WORD = re.compile(r"[^\W_]+")


def _words(text: str) -> list[str]:
    return [word.casefold() for word in _WORD.findall(text.replace("'", "").replace("’", ""))]


def short_name_fits(short_name: str, name: str, parent: str = "") -> bool:
    """Whether a drafted file name names the entity: at least half its words are words of the name (or of the
    parent's), a word matching another that starts with it ("grants", "grant"). An unrelated short name
    ("value error" for "Hanson") is not used: the file is named after the name."""
    ours = _words(short_name)
    theirs = _words(f"{name} {parent}")
    if not ours:
        return False

    def known(word: str) -> bool:
        return any(word == other or (min(len(word), len(other)) >= 4 and (word.startswith(other) or
                   other.startswith(word))) for other in theirs)  # fmt: skip

    return 2 * sum(map(known, ours)) >= len(ours)


def _grounded_events(
    where: str, events: list[EventDraft], facts: SourceFacts, source_dates: set[str]
) -> tuple[list[TimelineEvent], list[Flag]]:
    """The events whose date the source states and whose figures and quotations it grounds; flags for the rest."""
    kept: list[TimelineEvent] = []
    removed: list[Flag] = []
    for position, event in enumerate(events):
        place = f"{where}.timeline[{position}]"
        if not event.is_real_date:
            why = f"the date {event.date!r} is not a calendar date written YYYY-MM-DD"
            removed.append(Flag(gate="required", where=place, text=event.date, reason=why, verdict="removed"))
            continue
        if event.date not in source_dates:
            removed.append(Flag(gate="grounding", where=place, text=event.date, verdict="removed",
                                reason=f"the date {event.date} is not one the source states"))  # fmt: skip
            continue
        unverified = [f for f in check_text(event.text, facts) if f.verdict == "unverified"]
        if unverified:
            removed += [Flag(gate="grounding", where=place, text=f.text, reason=f.reason, verdict="removed")
                        for f in unverified]  # fmt: skip
            continue
        kept.append(TimelineEvent(date=event.date, text=event.text))
    return kept, removed


def _grounded_fields(
    where: str, draft: EntityDraft, schema: EntitySchema, facts: SourceFacts, source_dates: set[str]
) -> tuple[dict[str, str], list[Flag]]:
    """The type's fields the draft gives, each grounded (a date field's date stated by the source)."""
    allowed = set(schema.fields_for(draft.entity_type)) | set(schema.optional)
    fields: dict[str, str] = {}
    removed: list[Flag] = []
    for key, value in draft.field_values():
        if key not in allowed or key in ANSWER_FIELDS or key in fields:
            continue
        place = f"{where}.fields.{key}"
        if _DATE_FIELD.search(key) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            if value not in source_dates:
                removed.append(Flag(gate="grounding", where=place, text=value, verdict="removed",
                                    reason=f"the date {value} is not one the source states"))  # fmt: skip
                continue
        else:
            unverified = [f for f in check_text(value, facts) if f.verdict == "unverified"]
            if unverified:
                removed += [Flag(gate="grounding", where=place, text=f.text, reason=f.reason, verdict="removed")
                            for f in unverified]  # fmt: skip
                continue
        fields[key] = value
    return fields, removed


def judge_entities(
    entities: list[EntityDraft],
    updates: list[EntityUpdateDraft],
    *,
    source_text: str,
    source_date: str | None,
    domain: str,
    facts: SourceFacts,
    index: KBIndex,
    entities_dir: str,
    replaced: set[str] | None = None,
) -> EntityOutcome:
    """New entities to write and updates of existing notes, each decision said; pure apart from the index.

    ``replaced`` holds the notes a forced re-extraction deletes: they are not there to update.
    """
    schema = index.entity_schema
    allowed = schema.types_for(domain)
    under = f"{entities_dir.rstrip('/')}/"
    known = [ref for ref in index.entities if ref.path.startswith(under) and ref.path not in (replaced or set())]
    year = int(source_date[:4]) if source_date and source_date[:4].isdigit() else None
    source_dates = dates_in(source_text, year) | ({source_date} if source_date else set())
    outcome = EntityOutcome()
    updates_by_path: dict[str, EntityUpdate] = {}

    def decide(name: str, what: str, reason: str) -> None:
        outcome.decisions.append(EntityDecision(name=name, outcome=what, reason=reason))

    def update_of(target: EntityRef, events: list[TimelineEvent], status: str | None, flags: list[Flag]) -> None:
        update = updates_by_path.get(target.path)
        if update is None:
            update = EntityUpdate(target=target, secondary_domain=domain if target.domain != domain else None)
            updates_by_path[target.path] = update
            outcome.updated.append(update)
        update.events += [e for e in events if e not in update.events]
        if status and status.casefold() != target.status.casefold():
            update.status = status
        update.flags += flags

    for number, draft in enumerate(entities):
        where = f"entities[{number}]"
        existing = find_entity(draft.name, known) or (
            find_entity(draft.short_name, known) if draft.short_name else None
        )
        if existing is not None:
            # The KB's note decides the name, type and status; the draft adds its grounded events (a status read
            # off a draft the model thought new is no statement that the status changed).
            events, flags = _grounded_events(where, draft.timeline, facts, source_dates)
            update_of(existing, events, None, flags)
            how = "" if existing.domain == domain else f"; {domain} added to its secondary domains"
            decide(draft.name, "update", f"drafted as new, but the KB has it: {existing.path}{how}")
            continue
        events, flags = _grounded_events(where, draft.timeline, facts, source_dates)
        twin = next((n for n in outcome.created if _same_object(n, draft)), None)
        if twin is not None:  # the first draft's name, type and status stand; its events and fields gain
            fields, field_flags = _grounded_fields(where, draft.model_copy(update={"entity_type": twin.entity_type}),
                                                   schema, facts, source_dates)  # fmt: skip
            twin.events += [e for e in events if e not in twin.events]
            for key, value in fields.items():
                twin.fields.setdefault(key, value)
            twin.flags += flags + field_flags
            decide(draft.name, "merged", f"the same object as the draft {twin.name!r}")
            continue
        problem = proper_name_problem(draft.name, draft.entity_type)
        if problem:
            decide(draft.name, "dropped", f"name: {problem}")
            continue
        if draft.entity_type not in allowed:
            reason = f"type: {draft.entity_type!r} is not one of the {domain} types ({', '.join(allowed)})"
            decide(draft.name, "dropped", reason)
            continue
        if not draft.status:
            decide(draft.name, "dropped", "required: no status")
            continue
        status_issue = status_problem(draft.status, schema.statuses_for(draft.entity_type))
        if status_issue is not None and status_issue[1]:
            decide(draft.name, "dropped", f"status: {status_issue[0]}")
            continue
        status_flags = (
            [Flag(gate="status", where=f"{where}.status", text=draft.status, reason=status_issue[0])]
            if status_issue
            else []
        )
        fields, field_flags = _grounded_fields(where, draft, schema, facts, source_dates)
        summary_flags = [
            Flag(gate="grounding", where=f"{where}.summary", text=f.text, reason=f.reason)
            for f in check_text(draft.summary, facts, prose=True)
            if f.verdict == "unverified"
        ]
        short_name = draft.short_name
        if short_name and not short_name_fits(short_name, draft.name, fields.get("parent_entity", "")):
            short_name = ""  # filed under its name; the decision says why
        related = [ref for name in draft.related if (ref := index.resolve(name)) is not None]
        outcome.created.append(
            NewEntity(
                name=draft.name,
                short_name=short_name,
                entity_type=draft.entity_type,
                status=draft.status,
                summary=draft.summary,
                fields=fields,
                events=events,
                related=list({ref.path: ref for ref in related}.values()),
                flags=flags + field_flags + summary_flags + status_flags,
            )
        )
        unused = f"; its short name {draft.short_name!r} does not name it, so the file is named after the name"
        reason = "no entity note of that name, alias, handle or file name"
        decide(draft.name, "new", reason + (unused if draft.short_name and not short_name else ""))

    for number, change in enumerate(updates):
        target = find_entity(change.name, known)
        twin = next((n for n in outcome.created if name_key(n.name) == name_key(change.name)), None)
        if target is None and twin is None:
            decide(change.name, "dropped", "update of an entity the KB does not have")
            continue
        events, flags = _grounded_events(f"entity_updates[{number}]", change.timeline, facts, source_dates)
        if change.status and (issue := status_problem(change.status, schema.statuses_for(
                target.entity_type if target else twin.entity_type if twin else ""))) and issue[1]:  # fmt: skip
            flags.append(Flag(gate="status", where=f"entity_updates[{number}].status", text=change.status,
                              reason=issue[0], verdict="removed"))  # fmt: skip
            change = change.model_copy(update={"status": None})
        if target is None and twin is not None:
            twin.events += [e for e in events if e not in twin.events]
            decide(change.name, "merged", f"an update of the new draft {twin.name!r}")
            continue
        assert target is not None
        if not events and not (change.status and change.status.casefold() != target.status.casefold()):
            reason = (
                "no event the source grounds: " + "; ".join(f"{flag.where}: {flag.reason}" for flag in flags)
                if change.timeline
                else "no events and no new status"
            )
            decide(change.name, "dropped", reason)
            outcome.refused += [(change.name, flag) for flag in flags]
            continue
        update_of(target, events, change.status, flags)
        decide(change.name, "update", f"updates {target.path}")
    _resolve_parents(outcome.created, known)
    _unlink(outcome, index)
    return outcome


def _unlink(outcome: EntityOutcome, index: KBIndex) -> None:
    """Wiki links that resolve to no note (nor to a note drafted here) lose their brackets, counted."""
    drafted = {entity.slug for entity in outcome.created}

    def fix(text: str) -> str:
        def keep_or_unlink(match: re.Match[str]) -> str:
            target = match.group(1).partition("|")[0].strip()
            if target in drafted:
                return match.group(0)
            unlinked, count = unlink_unresolved(match.group(0), index)
            outcome.unlinked += count
            return unlinked

        return WIKI_LINK.sub(keep_or_unlink, text)

    for entity in outcome.created:
        entity.summary = fix(entity.summary)
        entity.events = [event.model_copy(update={"text": fix(event.text)}) for event in entity.events]
    for update in outcome.updated:
        update.events = [event.model_copy(update={"text": fix(event.text)}) for event in update.events]


def _same_object(entity: NewEntity, draft: EntityDraft) -> bool:
    return find_entity(draft.name, [_as_ref(entity)]) is not None


def _resolve_parents(created: list[NewEntity], known: list[EntityRef]) -> None:
    """A decision market's ``parent_entity`` names an entity note (the KB's, or one drafted with it) by its stem."""
    for entity in created:
        parent = entity.fields.get("parent_entity")
        if not parent:
            continue
        name = parent.strip().strip("[]").strip()
        ref = find_entity(name, known)
        sibling = next((n for n in created if n is not entity and find_entity(name, [_as_ref(n)])), None)
        stem = ref.path.rsplit("/", 1)[-1].removesuffix(".md") if ref else sibling.slug if sibling else None
        if stem:
            entity.parent = stem
            entity.fields["parent_entity"] = f"[[{stem}]]"
        else:
            entity.fields["parent_entity"] = name


def _as_ref(entity: NewEntity) -> EntityRef:
    return EntityRef(path=f"{entity.slug}.md", name=entity.name, entity_type=entity.entity_type, domain="")
