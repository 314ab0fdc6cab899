"""Prompt templates on disk, filled per source and hashed as sent.

Templates use ``string.Template`` (``$name``) so JSON braces in the text need
no escaping. The hash covers the exact messages and response format sent, so
a claim's provenance pins the prompt that produced it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from string import Template
from typing import Any

from pydantic import BaseModel

from extractor.core.errors import ExtractorError
from extractor.kb.entityschema import EntitySchema
from extractor.kb.sources import Source

PACKAGED = Path(__file__).parent.parent / "prompts"
CHECKOUT = Path(__file__).parent.parent.parent / "prompts"


class PromptError(ExtractorError, ValueError):
    """A template is missing or names a placeholder that is not filled."""


class Candidate(BaseModel):
    """An existing claim offered to the model as a link or enrichment target."""

    title: str
    description: str = ""


def default_prompts_dir() -> Path:
    return PACKAGED if PACKAGED.is_dir() else CHECKOUT


def _packaged_if_missing(directory: Path, name: str) -> Path:
    """The folder to read template ``name`` from: ``directory``, or the packaged prompts when it lacks it (a
    KB's own prompts folder made before the template existed)."""
    return directory if (directory / name).is_file() else default_prompts_dir()


def _template(directory: Path, name: str) -> Template:
    path = directory / name
    try:
        return Template(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PromptError(f"{path}: cannot read prompt template: {exc.strerror or exc}") from exc


def _fill(template: Template, name: str, values: dict[str, str]) -> str:
    try:
        return template.substitute(values).strip()
    except (KeyError, ValueError) as exc:
        raise PromptError(f"prompt template {name}: unknown placeholder {exc}") from exc


def template_text(directory: Path, name: str) -> str:
    """Template ``name`` as written (the packaged one when the KB's prompts folder lacks it)."""
    return _template(_packaged_if_missing(directory, name), name).template


def fill_template(directory: Path, name: str, values: dict[str, str]) -> str:
    """Template ``name`` of the KB's prompts folder (the packaged one when the folder lacks it), filled."""
    return _fill(_template(_packaged_if_missing(directory, name), name), name, values)


def persona(directory: Path, agent: str) -> str:
    path = directory / "agents" / f"{agent}.md"
    name = path.name if path.is_file() else "default.md"
    template = _template(directory / "agents", name)
    return _fill(template, name, {"agent": agent, "Agent": agent.capitalize()})


def part_note(directory: Path, part: int, parts: int, start: int, end: int, length: int) -> str:
    """What a part of a long source is told about itself: ``part.md``, the packaged one if the folder lacks it."""
    folder = _packaged_if_missing(directory, "part.md")
    values = {"part": str(part), "parts": str(parts), "start": f"{start:,}", "end": f"{end:,}", "length": f"{length:,}"}
    return _fill(_template(folder, "part.md"), "part.md", values)


# Fields the answer gives in their own place, not in an entity's ``fields`` list.
ANSWER_FIELDS = frozenset({"status", "summary", "name", "type", "entity_type", "domain"})


def format_entity_types(schema: EntitySchema, domain: str | None) -> str:
    """The types a domain may use, one line each, then their fields; types with the same fields share a line."""
    types = schema.types_for(domain)
    lines = [f"- {name}: {schema.types[name].tracks}" if schema.types[name].tracks else f"- {name}" for name in types]
    groups: dict[tuple[str, ...], list[str]] = {}
    for name in types:
        fields = tuple(field for field in schema.fields_for(name) if field not in ANSWER_FIELDS)
        if fields:
            groups.setdefault(fields, []).append(name)
    lines += [f"Fields of {', '.join(names)}: {', '.join(fields)}" for fields, names in groups.items()]
    statuses: dict[tuple[str, ...], list[str]] = {}
    for name in types:
        statuses.setdefault(tuple(schema.statuses_for(name)), []).append(name)
    if types:
        lines.append("Status: " + "; ".join(
            f"{', '.join(values)}" if len(statuses) == 1 or len(names) > 1 else f"{names[0]}: {', '.join(values)}"
            for values, names in statuses.items()
        ))  # fmt: skip
    return "\n".join(lines) or "(none)"


def format_entities(entities: list[Candidate] | None) -> str:
    """The entity notes offered for updates, with their heading; nothing when the run drafts no entities."""
    if entities is None:
        return ""
    listed = "\n".join(f"- {e.title}: {e.description}" for e in entities) if entities else "(none)"
    return f"\nExisting entities you may update (name: type):\n{listed}\n"


def entity_rules(directory: Path, entity_types: str | None) -> tuple[str, str]:
    """The entity rules (``entities.md``, the packaged one if the folder lacks it) and the type table, for the
    system message; both empty when the run drafts no entities."""
    if entity_types is None:
        return "", ""
    folder = _packaged_if_missing(directory, "entities.md")
    rules = _fill(_template(folder, "entities.md"), "entities.md", {}) + "\n"
    return rules, f"\nEntity types and their fields:\n{entity_types}\n"


def format_candidates(candidates: list[Candidate]) -> str:
    if not candidates:
        return "(none)"
    return "\n".join(f"- {c.title}: {c.description}" if c.description else f"- {c.title}" for c in candidates)


def build_messages(
    directory: Path,
    agent: str,
    source: Source,
    source_file: str,
    candidates: list[Candidate],
    schema: dict[str, Any] | None,
    entity_types: str | None = None,
    entities: list[Candidate] | None = None,
) -> list[dict[str, str]]:
    """System and user messages for one source; ``schema`` is inlined when given.

    ``entity_types`` (the domain's type table, in the system message: one agent, one domain, one stable prefix)
    and ``entities`` (existing entity notes the source may update: name and type) fill the entity parts; a
    run that drafts no entities (``entity_types`` None) has none of them.
    """
    schema_instructions = ""
    if schema is not None:
        schema_instructions = _fill(
            _template(directory, "schema_instructions.md"),
            "schema_instructions.md",
            {"schema": json.dumps(schema, separators=(",", ":"))},
        )
    rules, table = entity_rules(directory, entity_types)
    system = _fill(
        _template(directory, "system.md"),
        "system.md",
        {
            "persona": persona(directory, agent),
            "schema_instructions": schema_instructions,
            "entity_rules": rules,
            "entity_types": table,
        },
    )
    meta = source.metadata
    user = _fill(
        _template(directory, "user.md"),
        "user.md",
        {
            "source_file": source_file,
            "title": source.title,
            "author": str(meta.get("author") or "unknown"),
            "date": source.date or "unknown",
            "domain": source.domain or "unknown",
            "format": source.format or "unknown",
            "url": source.url or "unknown",
            "candidates": format_candidates(candidates),
            "entities": format_entities(entities if entity_types is not None else None),
            "body": source.body.strip(),
        },
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def build_selection_messages(
    directory: Path,
    agent: str,
    source: Source,
    numbered: str,
    targets: list[str],
    max_claims: int,
    schema: dict[str, Any] | None,
) -> list[dict[str, str]]:
    """System and user messages for choosing claims among a window of numbered sentences (``select.md`` and
    ``select_user.md``, the packaged ones if the folder lacks them); ``targets`` are the existing claims the
    window may enrich, offered only when retrieval found them strong."""
    schema_instructions = ""
    if schema is not None:
        schema_instructions = "\n" + _fill(
            _template(directory, "schema_instructions.md"),
            "schema_instructions.md",
            {"schema": json.dumps(schema, separators=(",", ":"))},
        )
    rules = ""
    if targets:
        folder = _packaged_if_missing(directory, "select_enrichments.md")
        rules = _fill(_template(folder, "select_enrichments.md"), "select_enrichments.md", {}) + "\n"
    folder = _packaged_if_missing(directory, "select.md")
    system = _fill(
        _template(folder, "select.md"),
        "select.md",
        {
            "persona": persona(directory, agent),
            "max_claims": str(max_claims),
            "enrichment_rules": rules,
            "schema_instructions": schema_instructions,
        },
    )
    listed = ("\nExisting claims:\n" + "\n".join(f"- {title}" for title in targets) + "\n") if targets else ""
    folder = _packaged_if_missing(directory, "select_user.md")
    user = _fill(
        _template(folder, "select_user.md"),
        "select_user.md",
        {
            "title": source.title,
            "author": str(source.metadata.get("author") or "unknown"),
            "date": source.date or "unknown",
            "targets": listed,
            "sentences": numbered,
        },
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def prompt_hash(messages: list[dict[str, str]], response_format: dict[str, Any] | None) -> str:
    """Short content hash of exactly what the first request sends."""
    payload = json.dumps({"messages": messages, "response_format": response_format}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]
