"""The KB's entity type system: which types a domain may use and which fields each type has.

A KB describes its entities in ``schemas/entity.md``: markdown tables of core types and of domain
extensions (under a heading per domain), tables of required and optional fields, and YAML blocks of the
fields of each type ("# Company attributes (also used by protocol, exchange, ...)"). This module reads
that document, and falls back to a built-in table when a KB has none. Pure functions: the caller reads
the file.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, Field
from slugify import slugify

SCHEMA_PATH = "schemas/entity.md"


class EntityType(BaseModel):
    name: str
    extends: str | None = None  # the core type a domain extension specialises
    domain: str | None = None  # None: a core type, open to every domain
    tracks: str = ""


class EntitySchema(BaseModel):
    types: dict[str, EntityType]
    required: list[str]
    optional: list[str]
    fields: dict[str, list[str]] = Field(default_factory=dict, description="the fields of each type, own only")
    statuses: dict[str, list[str]] = Field(default_factory=dict, description='the status values of a type ("": '
                                           "any type without its own)")  # fmt: skip

    def types_for(self, domain: str | None) -> list[str]:
        """The types a draft of this domain may use: the core types and the domain's extensions."""
        return [t.name for t in self.types.values() if t.domain is None or t.domain == domain]

    def statuses_for(self, entity_type: str) -> list[str]:
        """The status values a type's notes take: its own list, else the general one, else the built-in one."""
        return self.statuses.get(entity_type) or self.statuses.get("") or DEFAULT_STATUSES[""]

    def fields_for(self, entity_type: str) -> list[str]:
        """A type's own fields, then those of the core type it extends."""
        own = self.fields.get(entity_type, [])
        parent = self.types[entity_type].extends if entity_type in self.types else None
        inherited = self.fields.get(parent, []) if parent else []
        return own + [name for name in inherited if name not in own]


# The built-in type system, for a KB without schemas/entity.md: core types, open to every domain, and the
# domain types of the default domains (name, the core type it extends, what it tracks).
_DOMAIN_TYPES: dict[str, list[tuple[str, str | None, str]]] = {
    "internet-finance": [
        ("protocol", "company", "an on-chain protocol"),
        ("token", "product", "a fungible token distinct from its protocol"),
        ("decision_market", None, "a governance proposal, prediction market or futarchy decision"),
        ("exchange", "company", "a trading venue"),
        ("fund", "company", "an investment vehicle or DAO treasury"),
    ],
    "ai-alignment": [
        ("lab", "company", "an AI research laboratory"),
        ("model", "product", "an AI model or model family"),
        ("framework", "product", "a safety framework, governance protocol or methodology"),
        ("governance_body", "organization", "an AI governance or safety organisation"),
    ],
    "health": [
        ("drug", "product", "a pharmaceutical product"),
        ("insurer", "company", "a health insurance organisation"),
        ("provider", "company", "a healthcare delivery organisation"),
        ("policy", None, "legislation, regulation or an administrative rule"),
    ],
    "entertainment": [
        ("studio", "company", "a production company or media business"),
        ("creator", "person", "a content creator or artist"),
        ("franchise", "product", "an IP, franchise or media property"),
        ("platform", "product", "a distribution or social media platform"),
    ],
    "space-development": [
        ("vehicle", "product", "a launch vehicle or spacecraft"),
        ("mission", None, "a spaceflight mission"),
        ("facility", None, "a launch site, factory or ground infrastructure"),
        ("program", None, "a multi-mission programme"),
    ],
}
DEFAULT_TYPES = [
    EntityType(name="company", tracks="an organisation that operates: startup, fund, DAO, protocol"),
    EntityType(name="person", tracks="an individual whose positions or influence are tracked"),
    EntityType(name="organization", tracks="a government body, regulator, standards body or consortium"),
    EntityType(name="product", tracks="a product, tool or platform distinct from its maker"),
    EntityType(name="market", tracks="an industry segment or ecosystem"),
    *(
        EntityType(name=name, extends=extends, domain=domain, tracks=tracks)
        for domain, types in _DOMAIN_TYPES.items()
        for name, extends, tracks in types
    ),
]
DEFAULT_STATUSES = {
    "": ["active", "inactive", "acquired", "liquidated", "emerging"],
    "decision_market": ["active", "passed", "failed"],
}
DEFAULT_SCHEMA = EntitySchema(
    types={t.name: t for t in DEFAULT_TYPES},
    required=["type", "entity_type", "name", "domain", "status", "tracked_by", "created"],
    optional=["handles", "website", "last_updated", "tags", "secondary_domains"],
    fields={
        "company": ["founded", "founders", "category", "parent", "stage", "funding"],
        "person": ["role", "organizations"],
        "organization": ["jurisdiction", "authority"],
        "product": ["maker", "launched", "category"],
        "market": ["total_size", "key_players"],
        "decision_market": [
            "parent_entity",
            "platform",
            "proposer",
            "proposal_url",
            "proposal_date",
            "resolution_date",
            "category",
            "pass_volume",
            "fail_volume",
        ],  # fmt: skip
    },
)

_HEADING = re.compile(r"^(#{2,6})\s+(.*?)\s*$")
_CODE_NAME = re.compile(r"`([a-z_][a-z0-9_]*)`")
_FIELD_LINE = re.compile(r"^([a-z_][a-z0-9_]*):")
_STATUS_LINE = re.compile(r"^status:\s*([a-z_]+(?:\s*\|\s*[a-z_]+)+)")
_BLOCK_TITLE = re.compile(r"^#\s*(.+?) attributes(?: \(also used by ([^)]*)\))?", re.IGNORECASE)
_PARENTHESES = re.compile(r"\([^)]*\)")


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _tables(text: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """Each markdown table with the nearest heading above it: (heading, header cells, rows)."""
    tables: list[tuple[str, list[str], list[list[str]]]] = []
    heading = ""
    lines = text.splitlines()
    position = 0
    while position < len(lines):
        line = lines[position]
        found = _HEADING.match(line)
        if found:
            heading = found.group(2)
        is_table = line.lstrip().startswith("|") and position + 1 < len(lines)
        if is_table and set(lines[position + 1].replace("|", "").strip()) <= set("-: "):
            header = _cells(line)
            rows = []
            position += 2
            while position < len(lines) and lines[position].lstrip().startswith("|"):
                rows.append(_cells(lines[position]))
                position += 1
            tables.append((heading, header, rows))
            continue
        position += 1
    return tables


def _code_name(cell: str) -> str | None:
    found = _CODE_NAME.search(cell)
    return found.group(1) if found else None


def _plain_name(cell: str) -> str | None:
    """A type named without backticks ("company"); a dash or prose is no name."""
    word = cell.strip()
    return word if re.fullmatch(r"[a-z_][a-z0-9_]*", word) else None


def _domain_of(heading: str) -> str:
    """ "Internet Finance (Rio)" is internet-finance; "AI/Alignment (Theseus)" is ai-alignment."""
    return slugify(_PARENTHESES.sub("", heading))


def _field_blocks(text: str) -> dict[str, list[str]]:
    """Fields from the YAML blocks: a "# Company attributes (also used by protocol, ...)" comment starts
    the fields of those types, up to the next such comment or the end of the block."""
    fields: dict[str, list[str]] = {}
    for block in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL):
        owners: list[str] = []
        for line in block.splitlines():
            title = _BLOCK_TITLE.match(line.strip())
            if title:
                owners = [slugify(title.group(1), separator="_")]
                owners += [slugify(name, separator="_") for name in (title.group(2) or "").split(",") if name.strip()]
                continue
            found = _FIELD_LINE.match(line)
            if found and owners:
                for owner in owners:
                    names = fields.setdefault(owner, [])
                    if found.group(1) not in names:
                        names.append(found.group(1))
    return fields


def _status_values(text: str) -> dict[str, list[str]]:
    """``status: a | b | c`` lines of the YAML blocks: under a "# X attributes" comment, that type's; else all's."""
    statuses: dict[str, list[str]] = {}
    for block in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL):
        owner = ""
        for line in block.splitlines():
            title = _BLOCK_TITLE.match(line.strip())
            if title:
                owner = slugify(title.group(1), separator="_")
            found = _STATUS_LINE.match(line.strip())
            if found:
                statuses.setdefault(owner, [v.strip() for v in found.group(1).split("|")])
    return statuses


def parse_entity_schema(text: str) -> EntitySchema:
    """The type system a schema document describes; what it leaves out comes from the built-in one."""
    types: dict[str, EntityType] = {}
    required: list[str] = []
    optional: list[str] = []
    for heading, header, rows in _tables(text):
        columns = [cell.casefold() for cell in header]
        if columns[:1] == ["type"] and "extends" in columns:
            for row in rows:
                name = _code_name(row[0])
                if name:
                    extends = _code_name(row[1]) or _plain_name(row[1]) if len(row) > 1 else None
                    tracks = row[2] if len(row) > 2 else ""
                    types[name] = EntityType(name=name, extends=extends, domain=_domain_of(heading), tracks=tracks)
        elif columns[:1] == ["type"]:
            for row in rows:
                name = _code_name(row[0])
                if name:
                    types[name] = EntityType(name=name, tracks=row[1] if len(row) > 1 else "")
        elif columns[:1] == ["field"]:
            names = [row[0].strip("` ") for row in rows if row and row[0].strip("` ")]
            (required if "required" in heading.casefold() else optional).extend(names)
    if not types:
        return DEFAULT_SCHEMA
    fields = _field_blocks(text)
    return EntitySchema(
        types=types,
        required=required or DEFAULT_SCHEMA.required,
        optional=optional or DEFAULT_SCHEMA.optional,
        fields={name: names for name, names in fields.items() if name in types},
        statuses=_status_values(text) or DEFAULT_STATUSES,
    )


def load_entity_schema(kb_root: Path) -> EntitySchema:
    """The KB's ``schemas/entity.md`` when it has a readable one, else the built-in type system."""
    try:
        text = (kb_root / SCHEMA_PATH).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return DEFAULT_SCHEMA
    return parse_entity_schema(text)
