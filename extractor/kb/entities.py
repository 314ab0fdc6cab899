"""Entity notes: the objects a KB tracks over time, how they are found by name, and their timelines.

One entity per real-world object, so a name is matched the way people write it: case, punctuation,
a leading "@", a handle or an alias, and near spellings. Timelines are bullet lists
(``- **YYYY-MM-DD** — event``) under ``## Timeline``; new events go in date order and nothing else in the
file changes, byte for byte. Parsing and editing are pure; :func:`load_entities` reads the folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from extractor.core.records import Record
from extractor.kb.names import slug_for
from extractor.kb.yamlio import join_document, split_document

# Names this close (rapidfuzz ratio on the name keys) are one object spelled two ways: "Futardio" and
# "Futard.io", "MetaDAO" and "Meta DAO". Shorter keys must match exactly: "Drift" is not "Rift".
NAME_SCORE = 92.0
NAME_FUZZY_MIN_CHARS = 6
# Two events on one date this alike are one event told twice.
EVENT_SCORE = 85.0

_NOT_NAME = re.compile(r"[^\w]+")
_BULLET = re.compile(r"^- \*\*(\d{4}(?:-\d{2}(?:-\d{2})?)?)\*\*\s*[—–-]+\s*(.*)$")
# A bullet in the schema's own format: a full date, an em dash.
TIMELINE_BULLET = re.compile(r"^- \*\*(\d{4}-\d{2}-\d{2})\*\* — \S")
_TIMELINE = re.compile(r"^##\s+Timeline\s*$", re.IGNORECASE)
_NEXT_SECTION = re.compile(r"^#{1,2}\s+\S|^---\s*$")


class EntityRef(Record):
    path: str  # relative to the KB root, posix
    name: str
    entity_type: str
    domain: str
    status: str = ""
    aliases: list[str] = []
    handles: list[str] = []

    @property
    def keys(self) -> set[str]:
        """Every form of the name it is found by."""
        return {key for key in map(name_key, [self.name, *self.aliases, *self.handles, Path(self.path).stem]) if key}


class TimelineEvent(Record):
    date: str  # YYYY, YYYY-MM or YYYY-MM-DD
    text: str

    def bullet(self) -> str:
        return f"- **{self.date}** — {' '.join(self.text.split())}"


def name_key(name: str) -> str:
    """A name as compared: case, punctuation, spaces and a leading "@" aside ("Meta-DAO" is "metadao")."""
    return _NOT_NAME.sub("", name.casefold().removeprefix("@")).replace("_", "")


def _strings(value: object) -> list[str]:
    if isinstance(value, list):
        return [str(item) for item in value if isinstance(item, str | int | float) and str(item).strip()]
    return [str(value)] if isinstance(value, str) and value.strip() else []


def parse_entity(path: str, text: str) -> EntityRef | None:
    """The entity a file describes, or None when it is not an entity note (or has no name)."""
    try:
        metadata, _ = split_document(text)
    except (ValueError, yaml.YAMLError):
        return None
    if metadata.get("type") != "entity":
        return None
    name = str(metadata.get("name") or "").strip()
    if not name:
        return None
    return EntityRef(
        path=path,
        name=name,
        entity_type=str(metadata.get("entity_type") or ""),
        domain=str(metadata.get("domain") or ""),
        status=str(metadata.get("status") or ""),
        aliases=_strings(metadata.get("aliases")),
        handles=_strings(metadata.get("handles")),
    )


def load_entities(kb_root: Path, entities_dir: str) -> list[EntityRef]:
    """Every readable entity note under ``entities_dir``, in path order."""
    root = kb_root / entities_dir
    refs = []
    for folder, _, files in sorted(os.walk(root)):
        for file in sorted(files):
            if not file.endswith(".md"):
                continue
            path = Path(folder) / file
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            ref = parse_entity(path.relative_to(kb_root).as_posix(), text)
            if ref is not None:
                refs.append(ref)
    return refs


def find_entity(name: str, entities: list[EntityRef]) -> EntityRef | None:
    """The entity a name (or handle, or alias) names: an exact key first, then the nearest spelling."""
    key = name_key(name)
    if not key:
        return None
    for ref in entities:
        if key in ref.keys:
            return ref
    if len(key) < NAME_FUZZY_MIN_CHARS:
        return None
    from rapidfuzz import fuzz  # loaded by the commands that match names, not by every one that reads notes

    scored = [(max(fuzz.ratio(key, other) for other in ref.keys), ref) for ref in entities if ref.keys]
    best = max(scored, key=lambda pair: pair[0], default=(0.0, None))
    return best[1] if best[0] >= NAME_SCORE else None


# --- timelines ------------------------------------------------------------------


def timeline_bullets(body: str) -> list[str]:
    """The bullet lines of a body's ``## Timeline`` section (stripped, in file order), dated or not."""
    lines = body.splitlines()
    start = next((i for i, line in enumerate(lines) if _TIMELINE.match(line)), None)
    if start is None:
        return []
    bullets = []
    for line in lines[start + 1 :]:
        if _NEXT_SECTION.match(line):
            break
        if line.strip().startswith("- "):
            bullets.append(line.strip())
    return bullets


def timeline_events(body: str) -> list[TimelineEvent]:
    """The dated bullets of a body's ``## Timeline`` section, in file order."""
    found = [_BULLET.match(line) for line in timeline_bullets(body)]
    return [TimelineEvent(date=match.group(1), text=match.group(2).strip()) for match in found if match]


def _same_event(a: TimelineEvent, b: TimelineEvent) -> bool:
    from rapidfuzz import fuzz

    return a.date == b.date and fuzz.token_set_ratio(a.text.casefold(), b.text.casefold()) >= EVENT_SCORE


def add_events(text: str, events: list[TimelineEvent]) -> tuple[str, list[TimelineEvent]]:
    """The file's text with ``events`` in its timeline, and those actually added.

    Each new bullet goes before the first bullet with a later date (undated lines keep their places), so
    a timeline in date order stays so; an event already there (same date, near-same words) is not added
    twice, nor is one given twice. Every other byte of the file is kept. A file without a ``## Timeline``
    section gets one at the end of its body, before a closing ``---`` block of links if it has one.
    """
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.split(newline)
    known = timeline_events(text)
    added: list[TimelineEvent] = []
    for event in sorted(events, key=lambda e: e.date):
        if any(_same_event(event, other) for other in [*known, *added]):
            continue
        lines = _insert(lines, event)
        added.append(event)
    return newline.join(lines), added


def _insert(lines: list[str], event: TimelineEvent) -> list[str]:
    start = next((i for i, line in enumerate(lines) if i >= _body_start(lines) and _TIMELINE.match(line)), None)
    if start is None:
        return _new_section(lines, event)
    end = start + 1
    while end < len(lines) and not _NEXT_SECTION.match(lines[end]):
        end += 1
    last_bullet = None
    for position in range(start + 1, end):
        found = _BULLET.match(lines[position].strip())
        if found is None:
            continue
        if found.group(1) > event.date:
            return [*lines[:position], event.bullet(), *lines[position:]]
        last_bullet = position
    at = last_bullet + 1 if last_bullet is not None else start + 1
    if last_bullet is None and at < len(lines) and not lines[at].strip():
        at += 1  # after the blank line under the heading
    return [*lines[:at], event.bullet(), *lines[at:]]


def _body_start(lines: list[str]) -> int:
    """The first line after the frontmatter (0 when there is none)."""
    if not lines or lines[0].strip() != "---":
        return 0
    return next((i + 1 for i in range(1, len(lines)) if lines[i].strip() == "---"), 0)


def _new_section(lines: list[str], event: TimelineEvent) -> list[str]:
    body = _body_start(lines)
    closing = len(lines)
    for position in range(len(lines) - 1, body - 1, -1):
        if lines[position].strip() == "---":
            closing = position
            break
    head = lines[:closing]
    while head and not head[-1].strip():
        head.pop()
    return [*head, "", "## Timeline", "", event.bullet(), "", *lines[closing:]]


# --- which entities a text names -------------------------------------------------

_SEPARATORS = r"[\W_]*"
_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+|[^\W\d_A-Za-z]+")


def _name_pattern(name: str) -> re.Pattern[str] | None:
    """A name as it may be written in running text: any case, with or without spaces, dots or dashes between
    its parts ("MetaDAO", "Meta DAO", "meta-dao"), as whole words."""
    words = _CAMEL.findall(name.removeprefix("@"))  # "MetaDAO" is written "Meta DAO" too
    parts = [re.escape(part.casefold()) for part in words]
    if not parts or len("".join(parts)) < 3:
        return None
    return re.compile(r"(?<![^\W_])" + _SEPARATORS.join(parts) + r"(?![^\W_])")


def mentions(text: str, entities: list[EntityRef]) -> list[tuple[EntityRef, int]]:
    """The entities a text names (by name, alias, handle or file stem) and how often, most named first."""
    folded = text.casefold()
    counted = []
    for ref in entities:
        forms = {ref.name, *ref.aliases, *ref.handles, Path(ref.path).stem.replace("-", " ")}
        patterns = [pattern for pattern in map(_name_pattern, forms) if pattern is not None]
        count = max((len(pattern.findall(folded)) for pattern in patterns), default=0)
        if count:
            counted.append((ref, count))
    return sorted(counted, key=lambda pair: (-pair[1], pair[0].path))


# --- writing entity notes ---------------------------------------------------------


class EntityNote(Record):
    """A new entity note as it is written: the schema's required frontmatter, then the type's own fields."""

    name: str
    entity_type: str
    domain: str
    status: str
    tracked_by: str  # the agent: from the settings, never from the model
    created: str  # today, from the clock
    fields: dict[str, str | list[str]] = {}  # the type's optional fields the source gives
    summary: str = ""
    events: list[TimelineEvent] = []
    related: list[str] = []  # wiki link targets that resolve (the caller unlinks the rest)
    secondary_domains: list[str] = []


def entity_slug(name: str, parent: str | None = None) -> str:
    """A note's file stem; a decision market is filed under its parent's slug first."""
    slug = slug_for(name)
    if parent:
        parent_slug = slug_for(parent.strip("[]"))
        slug = slug if slug.startswith(f"{parent_slug}-") else f"{parent_slug}-{slug}"
    return slug


def entity_path(entities_dir: str, domain: str, name: str, parent: str | None = None) -> str:
    """``<entities_dir>/<domain>/<slug>.md``, the slug as :func:`entity_slug` makes it."""
    return f"{entities_dir}/{domain}/{entity_slug(name, parent)}.md"


def render_entity(note: EntityNote) -> str:
    """The note's text: frontmatter, ``# name``, the summary, ``## Timeline`` in date order (each event once)
    and ``## Relationship to KB``."""
    metadata: dict[str, object] = {
        "type": "entity",
        "entity_type": note.entity_type,
        "name": note.name,
        "domain": note.domain,
        "status": note.status,
        "tracked_by": note.tracked_by,
        "created": note.created,
    }
    if note.secondary_domains:
        metadata["secondary_domains"] = list(note.secondary_domains)
    for key, value in note.fields.items():
        metadata.setdefault(key, value)
    events: list[TimelineEvent] = []
    for event in sorted(note.events, key=lambda e: e.date):
        if not any(_same_event(event, other) for other in events):
            events.append(event)
    parts = [f"# {note.name}"]
    if note.summary.strip():
        parts.append(" ".join(note.summary.split()))
    if events:
        parts.append("## Timeline\n\n" + "\n".join(event.bullet() for event in events))
    if note.related:
        parts.append("## Relationship to KB\n\n" + "\n".join(f"- [[{target}]]" for target in note.related))
    return join_document(metadata, "\n\n".join(parts) + "\n")
