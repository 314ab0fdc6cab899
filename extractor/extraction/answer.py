"""The shape of the LLM's answer, sent to the model as a JSON schema.

Fields that gather evidence come before the fields that judge it, so a model
writing the JSON in order commits to evidence before verdicts. Checks that
JSON Schema cannot express portably live in validators: they run locally and
their messages are what a re-ask feeds back to the model.
"""

from __future__ import annotations

import datetime
import functools
import json
import re
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, create_model, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from extractor.core.text import CONTROL, one_line, visible
from extractor.kb.claims import Confidence

TITLE_MAX = 260
_LETTER_WORD = re.compile(r"[^\W\d_]{2,}")
_ARGUES_THAT = re.compile(r"^\W*this note argues that\s+", re.IGNORECASE)


def letter_words(text: str) -> int:
    """How many real words (two or more letters) a text has; brackets and quotes do not count."""
    return len(_LETTER_WORD.findall(text))


def _non_empty_items(items: list[str]) -> list[str]:
    return [item.strip() for item in items if item and item.strip()]


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def unique_items(items: list[str]) -> list[str]:
    """Items in order, each said once (small models repeat list entries)."""
    seen: set[str] = set()
    kept = []
    for item in items:
        key = _norm(item)
        if key and key not in seen:
            seen.add(key)
            kept.append(item)
    return kept


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def without_repeated_sentences(text: str) -> str:
    """Drop sentences said before (small models loop); paragraph breaks are kept."""
    seen: set[str] = set()
    paragraphs = []
    for paragraph in re.split(r"\n\s*\n", text):
        kept = []
        for sentence in _SENTENCE_END.split(paragraph.strip()):
            key = _norm(sentence)
            if key and key in seen:
                continue
            seen.add(key)
            kept.append(sentence)
        if kept:
            paragraphs.append(" ".join(kept) if len(kept) > 1 else kept[0])
    return "\n\n".join(paragraphs)


_WIKI_LINK = re.compile(r"^\[\[([^\[\]]+)\]\]$")
_SECTION = re.compile(r"(?<=\S)#(?=\S)")


def note_name(value: str) -> str:
    """The note a ``related`` entry names: ``[[x|alias]]``, ``[[x#section]]``, ``x|alias`` and ``x#section`` all
    name note ``x`` (the claim as a whole is what is related; the KB's notes link ``[[x]]``). Unbracketed, only a
    ``#`` between two non-spaces starts a section, so "C# code" or "issue #12" stay whole."""
    name = one_line(value)
    linked = _WIKI_LINK.match(name)
    if linked:
        return linked.group(1).replace("\\|", "|").partition("|")[0].partition("#")[0].strip()
    return _SECTION.split(name.partition("|")[0], maxsplit=1)[0].strip()


def required_line(value: str, problem: str) -> str:
    """The value on one line; ``problem`` is the re-ask's message when nothing is left."""
    value = one_line(value)
    if not value:
        raise ValueError(problem)
    return value


class ClaimDraft(BaseModel):
    model_config = ConfigDict(extra="forbid")

    evidence: list[str]
    argument: str
    limitations: list[str]
    title: str
    description: str
    confidence: Confidence
    secondary_domains: list[str]
    related: list[str]

    @field_validator("title", "description")
    @classmethod
    def _single_line(cls, value: str) -> str:
        value = without_repeated_sentences(one_line(value))
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("title")
    @classmethod
    def _title_length(cls, value: str) -> str:
        if len(value) > TITLE_MAX:
            raise ValueError(f"title is {len(value)} characters; keep it under {TITLE_MAX}")
        # The prompt's test sentence ("This note argues that <title>") copied into the title.
        value = _ARGUES_THAT.sub("", value)
        if letter_words(value) < 4:
            raise ValueError("title must be a complete proposition, not a topic")
        return value.lstrip("# ").rstrip().rstrip(".")

    @field_validator("description")
    @classmethod
    def _description_words(cls, value: str) -> str:
        if letter_words(value) < 3:
            raise ValueError("description must be a sentence")
        return value

    @field_validator("evidence")
    @classmethod
    def _some_evidence(cls, items: list[str]) -> list[str]:
        items = unique_items([one_line(item) for item in _non_empty_items(items)])
        if not items:
            raise ValueError("each claim needs at least one evidence item")
        return items

    @field_validator("limitations", "secondary_domains")
    @classmethod
    def _clean_list(cls, items: list[str]) -> list[str]:
        return unique_items([one_line(item) for item in _non_empty_items(items)])

    @field_validator("related")
    @classmethod
    def _related(cls, items: list[str]) -> list[str]:
        return unique_items([note_name(item) for item in _non_empty_items(items) if note_name(item)])

    @field_validator("argument")
    @classmethod
    def _argument(cls, value: str) -> str:
        value = visible(CONTROL.sub(lambda m: m.group(0) if m.group(0) in "\n\t" else " ", value))
        if not value.strip():
            raise ValueError("must not be empty")
        return without_repeated_sentences(value.strip())


class EnrichmentKind(StrEnum):
    CONFIRM = "confirm"
    CHALLENGE = "challenge"
    EXTEND = "extend"


class EnrichmentDraft(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: str
    evidence: str
    kind: EnrichmentKind

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        return required_line(value, "must name an existing claim")

    @field_validator("evidence")
    @classmethod
    def _evidence(cls, value: str) -> str:
        value = visible(CONTROL.sub(lambda m: m.group(0) if m.group(0) in "\n" else " ", value)).strip()
        if not value:
            raise ValueError("must not be empty")
        return value


class EventDraft(BaseModel):
    model_config = ConfigDict(extra="forbid")

    date: str
    text: str

    @field_validator("date")
    @classmethod
    def _date(cls, value: str) -> str:
        return value.strip()  # judged per event by the entity gates: one bad date drops its event, not the answer

    @property
    def is_real_date(self) -> bool:
        """Written YYYY-MM-DD, and a day the calendar has ("2026-02-00" is not)."""
        try:
            return len(self.date) == 10 and bool(datetime.date.fromisoformat(self.date))
        except ValueError:
            return False

    @field_validator("text")
    @classmethod
    def _event_text(cls, value: str) -> str:
        value = one_line(value)
        if letter_words(value) < 2:
            raise ValueError("an event says what happened")
        return value


class EntityDraft(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    short_name: str
    entity_type: str
    status: str
    summary: str
    fields: list[str]  # "name: value", one line each: a list of pairs costs fewer schema tokens than objects
    timeline: list[EventDraft]
    related: list[str]

    @field_validator("short_name", "status", "summary")
    @classmethod
    def _entity_line(cls, value: str) -> str:
        return one_line(value)

    @field_validator("name")
    @classmethod
    def _named(cls, value: str) -> str:
        return required_line(value, "an entity needs a name")

    @field_validator("fields")
    @classmethod
    def _lines(cls, items: list[str]) -> list[str]:
        return unique_items([one_line(item) for item in _non_empty_items(items)])

    @field_validator("related")
    @classmethod
    def _related(cls, items: list[str]) -> list[str]:
        return unique_items([note_name(item) for item in _non_empty_items(items) if note_name(item)])

    def field_values(self) -> list[tuple[str, str]]:
        """The ``fields`` as (name, value) pairs; a line without "name: value" is no field."""
        pairs = [item.partition(":") for item in self.fields]
        return [
            (name.strip(), value.strip()) for name, colon, value in pairs if colon and name.strip() and value.strip()
        ]


class EntityUpdateDraft(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    status: str | None
    timeline: list[EventDraft]

    @field_validator("name")
    @classmethod
    def _named(cls, value: str) -> str:
        return required_line(value, "must name an existing entity")

    @field_validator("status")
    @classmethod
    def _status(cls, value: str | None) -> str | None:
        return one_line(value) or None if value is not None else None


class ExtractionAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entity_model: ClassVar[type[EntityDraft]] = EntityDraft  # its entities' class: a domain's types as an enum

    key_facts: list[str]
    claims: list[ClaimDraft]
    enrichments: list[EnrichmentDraft]
    entities: list[EntityDraft] = []
    entity_updates: list[EntityUpdateDraft] = []
    null_result_reason: str | None
    notes: str

    @field_validator("key_facts")
    @classmethod
    def _facts(cls, items: list[str]) -> list[str]:
        return unique_items([one_line(item) for item in _non_empty_items(items)])

    @field_validator("notes")
    @classmethod
    def _notes(cls, value: str) -> str:
        return one_line(value)

    @field_validator("null_result_reason")
    @classmethod
    def _reason(cls, value: str | None) -> str | None:
        return one_line(value) or None if value is not None else None

    @model_validator(mode="after")
    def _something_or_a_reason(self) -> ExtractionAnswer:
        if not self.drafts_anything and not self.null_result_reason:
            raise ValueError(
                "give at least one claim, enrichment or entity, or explain in null_result_reason "
                "why nothing is worth extracting"
            )
        return self

    @property
    def drafts_anything(self) -> bool:
        return bool(self.claims or self.enrichments or self.entities or self.entity_updates)

    @classmethod
    def grammar_schema(cls, max_tokens: int | None = None) -> dict:
        """Schema for grammar-constrained endpoints, with bounds a looping model stops at: with ``max_tokens``,
        string lengths shrink until the longest answer the grammar allows fits that many tokens."""
        schema = bounded_schema(cls)
        return fit_to(schema, int(max_tokens * WORST_CHARS_PER_TOKEN)) if max_tokens else schema


@functools.cache
def answer_model(entity_types: tuple[str, ...] | None) -> type[ExtractionAnswer]:
    """The answer whose entities must take one of ``entity_types`` (the source's domain's): an enum in the
    schema the model is given, checked again when the answer is read. ``None``: a run that drafts no
    entities, whose schema has no entity fields at all. Cached: one class per set of types, so its schema is
    built once."""
    if entity_types is None:
        return create_model(
            "ExtractionAnswer",
            __base__=ExtractionAnswer,
            entities=(SkipJsonSchema[list[EntityDraft]], []),
            entity_updates=(SkipJsonSchema[list[EntityUpdateDraft]], []),
        )
    if not entity_types:
        return ExtractionAnswer
    allowed = Literal[entity_types]  # type: ignore[valid-type]
    entity = create_model("EntityDraft", __base__=EntityDraft, entity_type=(allowed, ...))
    answer = create_model("ExtractionAnswer", __base__=ExtractionAnswer, entities=(list[entity], []))
    answer.entity_model = entity
    return answer


def plain_answer(answer: ExtractionAnswer) -> ExtractionAnswer:
    """The answer as the one :class:`ExtractionAnswer` class: a domain's answer class is made at run time, and
    results cross process boundaries, where only importable classes can be pickled."""
    if type(answer) is ExtractionAnswer:
        return answer
    return ExtractionAnswer.model_validate(answer.model_dump(mode="json"))


def salvage_answer(
    data: object, model: type[ExtractionAnswer] = ExtractionAnswer
) -> tuple[ExtractionAnswer, list[str]] | None:
    """Keep the valid parts of an answer that failed validation as a whole.

    Used only after the re-asks are spent: each claim, enrichment and entity is
    checked on its own (as ``model``, the answer asked for, defines it), invalid
    ones are dropped and named. Returns None when nothing usable is left, so a
    hopeless answer still fails the source.
    """
    if not isinstance(data, dict):
        return None
    dropped: list[str] = []

    def valid(kind: type[BaseModel], items: object, label: str) -> list[dict]:
        kept = []
        for number, item in enumerate(items if isinstance(items, list) else []):
            try:
                kept.append(kind.model_validate(item).model_dump(mode="json"))
            except ValueError as exc:
                first = exc.errors()[0] if hasattr(exc, "errors") else {"loc": (), "msg": str(exc)}
                where = ".".join(str(p) for p in first["loc"])
                dropped.append(f"invalid {label} {number + 1} ({where}: {first['msg']})")
        return kept

    def strings(value: object) -> list[str]:
        return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []

    reason = data.get("null_result_reason")
    cleaned = {
        "key_facts": strings(data.get("key_facts")),
        "claims": valid(ClaimDraft, data.get("claims"), "claim"),
        "enrichments": valid(EnrichmentDraft, data.get("enrichments"), "enrichment"),
        "entities": valid(model.entity_model, data.get("entities"), "entity"),
        "entity_updates": valid(EntityUpdateDraft, data.get("entity_updates"), "entity update"),
        "null_result_reason": reason if isinstance(reason, str) else None,
        "notes": data.get("notes") if isinstance(data.get("notes"), str) else "",
    }
    if not any(cleaned[key] for key in ("claims", "enrichments", "entities", "entity_updates")):
        return None
    try:
        return model.model_validate(cleaned), dropped
    except ValueError:
        return None


# Upper bounds written into the schema for grammar-constrained endpoints
# (llama.cpp turns maxItems/maxLength into its grammar), so a small model that
# loops stops at a bound instead of running into max_tokens.
SCHEMA_BOUNDS: dict[str, dict[str, dict[str, int]]] = {
    "ExtractionAnswer": {
        "key_facts": {"maxItems": 5, "itemMaxLength": 160},
        "claims": {"maxItems": 3},
        "enrichments": {"maxItems": 2},
        "entities": {"maxItems": 4},
        "entity_updates": {"maxItems": 4},
        "notes": {"maxLength": 240},
    },
    "ClaimDraft": {
        "evidence": {"maxItems": 4, "itemMaxLength": 200},
        "argument": {"maxLength": 600},
        "limitations": {"maxItems": 3, "itemMaxLength": 160},
        "title": {"maxLength": 160},
        "description": {"maxLength": 240},
        "secondary_domains": {"maxItems": 2, "itemMaxLength": 40},
        "related": {"maxItems": 3, "itemMaxLength": 200},
    },
    "EnrichmentDraft": {
        "target": {"maxLength": 200},
        "evidence": {"maxLength": 300},
    },
    "EntityDraft": {
        "name": {"maxLength": 120},
        "short_name": {"maxLength": 60},
        "summary": {"maxLength": 300},
        "fields": {"maxItems": 8, "itemMaxLength": 200},
        "timeline": {"maxItems": 6},
        "related": {"maxItems": 3, "itemMaxLength": 200},
    },
    "EntityUpdateDraft": {"timeline": {"maxItems": 4}},
    "EventDraft": {"date": {"maxLength": 10}, "text": {"maxLength": 240}},
}


def bounded_schema(model: type[BaseModel], bounds: dict[str, dict[str, dict[str, int]]] = SCHEMA_BOUNDS) -> dict:
    """The model's JSON schema with length and count bounds added."""
    schema = model.model_json_schema()
    objects = {model.__name__: schema, **schema.get("$defs", {})}
    for name, fields in bounds.items():
        properties = objects.get(name, {}).get("properties", {})
        for field, limits in fields.items():
            target = properties.get(field)
            if target is None:
                continue
            for key, value in limits.items():
                if key == "itemMaxLength":
                    target.setdefault("items", {})["maxLength"] = value
                else:
                    target[key] = value
    return schema


# A small model's looping text, measured: 8,584 characters in 3,072 tokens; 2.5 leaves a margin.
WORST_CHARS_PER_TOKEN = 2.5
MIN_STRING_BOUND = 40


def longest_answer(schema: dict[str, Any], node: dict[str, Any] | None = None) -> int:
    """Characters of the longest JSON a bounded schema allows (strings at their bounds, arrays full, no spaces);
    an unbounded string counts 1,000."""
    node = schema if node is None else node
    defs = schema.get("$defs", {})
    if "$ref" in node:
        return longest_answer(schema, defs[node["$ref"].rsplit("/", 1)[-1]])
    if "anyOf" in node:
        return max(longest_answer(schema, option) for option in node["anyOf"])
    if "enum" in node:
        return max(len(json.dumps(value)) for value in node["enum"])
    kind = node.get("type")
    if kind == "string":
        return int(node.get("maxLength", 1000)) + 2
    if kind == "array":
        return 2 + int(node.get("maxItems", 10)) * (longest_answer(schema, node.get("items", {})) + 1)
    if kind == "object":
        properties = node.get("properties", {})
        return 2 + sum(len(key) + 4 + longest_answer(schema, value) for key, value in properties.items())
    return 5


def fit_to(schema: dict[str, Any], chars: int) -> dict[str, Any]:
    """The schema with its bounds scaled down until its longest answer fits ``chars``: string lengths first
    (never below 40), then, when they can shrink no further, the number of items of the lists (never below 1)."""
    for _ in range(12):
        longest = longest_answer(schema)
        if longest <= chars:
            break
        factor = chars / longest
        strings = _nodes(schema, "string")
        if any(node.get("maxLength", 1000) > MIN_STRING_BOUND for node in strings):
            for node in strings:
                node["maxLength"] = max(MIN_STRING_BOUND, int(node.get("maxLength", 1000) * factor))
        else:
            for node in _nodes(schema, "array"):
                node["maxItems"] = max(1, int(node.get("maxItems", 10) * factor))
    return schema


def _nodes(node: Any, kind: str) -> list[dict[str, Any]]:
    """Every sub-schema of a type (strings: not enums), depth first."""
    if isinstance(node, dict):
        own = [node] if node.get("type") == kind and "enum" not in node else []
        return own + [found for value in node.values() for found in _nodes(value, kind)]
    if isinstance(node, list):
        return [found for value in node for found in _nodes(value, kind)]
    return []
