"""Claim files: the schema, lossless parsing and rendering, and wiki links.

A parsed file keeps everything it had (unknown keys, extra sections, footer
lines), so rendering it back never loses a reviewer's words. New drafts are
built through :class:`ClaimFrontmatter`, which enforces the KB schema.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from extractor.core.errors import ExtractorError
from extractor.kb.yamlio import describe_yaml_error, has_frontmatter, join_document, split_document

WIKI_LINK = re.compile(r"\[\[([^\[\]\n]+?)\]\]")
_HEADING2 = re.compile(r"^## +(.*?)\s*$")
_RULE = re.compile(r"^-{3,}\s*$")
_FOOTER_LABELS = ("Relevant Notes:", "Topics:")


class Confidence(StrEnum):
    PROVEN = "proven"
    LIKELY = "likely"
    EXPERIMENTAL = "experimental"
    SPECULATIVE = "speculative"


class ClaimFrontmatter(BaseModel):
    """The KB's claim frontmatter; unknown keys are kept, not dropped."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(default="claim", pattern="^claim$")
    domain: str = Field(min_length=1)
    description: str = Field(min_length=1)
    confidence: Confidence
    source: str = Field(min_length=1)
    created: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    secondary_domains: list[str] | None = None

    def as_metadata(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class Section(BaseModel):
    heading: str
    body: str = ""


class ClaimParseError(ExtractorError, ValueError):
    """A claim file that cannot be read as a claim."""


class ClaimDocument(BaseModel):
    """One claim file: frontmatter mapping plus the body split into its parts."""

    metadata: dict[str, Any]
    title: str
    preamble: str = ""
    argument: str = ""
    sections: list[Section] = Field(default_factory=list)
    relevant_notes: list[str] = Field(default_factory=list)
    topics: list[str] = Field(default_factory=list)
    footer_extra: str = ""
    has_footer: bool = True
    title_in_body: bool = True

    def section(self, name: str) -> Section | None:
        for section in self.sections:
            if section.heading.strip().lower() == name.lower():
                return section
        return None

    @property
    def evidence(self) -> list[str]:
        section = self.section("Evidence")
        return bullets(section.body) if section else []

    @property
    def limitations(self) -> list[str]:
        section = self.section("Limitations") or self.section("Challenges")
        return bullets(section.body) if section else []

    def frontmatter(self) -> ClaimFrontmatter:
        """Validate the metadata against the KB schema (raises ValidationError)."""
        return ClaimFrontmatter.model_validate(self.metadata)


def bullets(text: str) -> list[str]:
    """Top-level markdown bullet items, continuation lines joined."""
    items: list[str] = []
    for line in text.splitlines():
        if re.match(r"^[-*] +", line):
            items.append(re.sub(r"^[-*] +", "", line).strip())
        elif items and line.startswith((" ", "\t")) and line.strip():
            items[-1] += " " + line.strip()
    return items


def bullet_list(items: list[str]) -> str:
    return "\n".join(f"- {item}" for item in items)


def wiki_links(text: str) -> list[str]:
    """Targets of ``[[target]]`` or ``[[target|label]]`` links, in order."""
    return [m.group(1).split("|", 1)[0].strip() for m in WIKI_LINK.finditer(text)]


def footer_start(lines: list[str]) -> int | None:
    """Index of the ``---`` line that opens the Relevant Notes/Topics footer."""
    for index in range(len(lines) - 1, -1, -1):
        if _RULE.match(lines[index]):
            rest = [line.strip() for line in lines[index + 1 :] if line.strip()]
            if rest and rest[0] in _FOOTER_LABELS:
                return index
    return None


def _parse_footer(lines: list[str]) -> tuple[list[str], list[str], str]:
    notes: list[str] = []
    topics: list[str] = []
    extra: list[str] = []
    target: list[str] | None = None
    for line in lines:
        stripped = line.strip()
        if stripped == "Relevant Notes:":
            target = notes
        elif stripped == "Topics:":
            target = topics
        elif not stripped:
            continue
        elif target is not None and re.match(r"^[-*] +", line):
            target.append(re.sub(r"^[-*] +", "", line).rstrip())
        else:
            extra.append(line.rstrip())
    return notes, topics, "\n".join(extra)


def parse_claim_body(metadata: dict[str, Any], body: str, fallback_title: str | None = None) -> ClaimDocument:
    """Split a claim body; files without a ``# title`` take ``fallback_title``."""
    lines = body.splitlines()
    title_index = next((i for i, line in enumerate(lines) if line.startswith("# ")), None)
    if title_index is None:
        if not fallback_title:
            raise ClaimParseError("no '# title' heading")
        title, preamble, rest = fallback_title, "", lines
    else:
        title = lines[title_index][2:].strip()
        preamble = "\n".join(lines[:title_index]).strip()
        rest = lines[title_index + 1 :]
    footer_index = footer_start(rest)
    notes: list[str] = []
    topics: list[str] = []
    footer_extra = ""
    if footer_index is not None:
        notes, topics, footer_extra = _parse_footer(rest[footer_index + 1 :])
        rest = rest[:footer_index]

    argument_lines: list[str] = []
    sections: list[Section] = []
    for line in rest:
        heading = _HEADING2.match(line)
        if heading:
            sections.append(Section(heading=heading.group(1)))
        elif sections:
            sections[-1].body += line + "\n"
        else:
            argument_lines.append(line)
    for section in sections:
        section.body = section.body.strip()
    return ClaimDocument(
        metadata=metadata,
        title=title,
        preamble=preamble,
        argument="\n".join(argument_lines).strip(),
        sections=sections,
        relevant_notes=notes,
        topics=topics,
        footer_extra=footer_extra,
        has_footer=footer_index is not None,
        title_in_body=title_index is not None,
    )


def parse_claim(text: str, fallback_title: str | None = None) -> ClaimDocument:
    """Parse a claim file's text; raises :class:`ClaimParseError` with the problem."""
    if not has_frontmatter(text):
        raise ClaimParseError("no YAML frontmatter")
    try:
        metadata, body = split_document(text)
    except (yaml.YAMLError, ValueError) as exc:
        raise ClaimParseError("invalid frontmatter: " + describe_yaml_error(exc)) from exc
    return parse_claim_body(metadata, body, fallback_title)


def render_claim_body(claim: ClaimDocument) -> str:
    parts: list[str] = []
    if claim.preamble:
        parts.append(claim.preamble)
    if claim.title_in_body:
        parts.append(f"# {claim.title}")
    if claim.argument:
        parts.append(claim.argument)
    for section in claim.sections:
        parts.append(f"## {section.heading}")
        if section.body:
            parts.append(section.body)
    if claim.has_footer:
        parts.append("---")
        parts.append("Relevant Notes:\n" + bullet_list(claim.relevant_notes))
        parts.append("Topics:\n" + bullet_list(claim.topics))
        if claim.footer_extra:
            parts.append(claim.footer_extra)
    return "\n\n".join(part.rstrip() for part in parts) + "\n"


def render_claim(claim: ClaimDocument) -> str:
    return join_document(claim.metadata, render_claim_body(claim))


def insert_before_footer(text: str, block: str) -> str:
    """Add ``block`` to a claim file's body just above its footer, or at the end.

    Works on the raw text so the frontmatter and the rest of the file stay
    byte-for-byte as they were.
    """
    lines = text.splitlines()
    body_start = 0
    if has_frontmatter(text):
        rules = [i for i, line in enumerate(lines) if _RULE.match(line)]
        body_start = rules[1] + 1 if len(rules) > 1 else 0
    index = footer_start(lines[body_start:])
    block_lines = block.strip("\n").splitlines()
    end = "\n" if text.endswith("\n") else ""
    if index is None:
        head = "\n".join(lines).rstrip("\n")
        return head + "\n\n" + "\n".join(block_lines) + "\n"
    index += body_start
    head = "\n".join(lines[:index]).rstrip("\n")
    tail = "\n".join(lines[index:])
    return head + "\n\n" + "\n".join(block_lines) + "\n\n" + tail.rstrip("\n") + end


_ENRICHMENT_HEADING = re.compile(r"^#{2,3} +Additional Evidence\b")


def remove_enrichment_blocks(text: str, source_slug: str) -> str:
    """Drop ``Additional Evidence`` blocks whose Source line names ``source_slug``."""
    marker = f"*Source: [[{source_slug}]]"
    lines = text.splitlines()
    kept: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if _ENRICHMENT_HEADING.match(line):
            end = index + 1
            while end < len(lines) and not (lines[end].startswith("#") or _RULE.match(lines[end])):
                end += 1
            if any(marker in block_line for block_line in lines[index:end]):
                while kept and not kept[-1].strip():
                    kept.pop()
                kept.append("")
                index = end
                continue
        kept.append(line)
        index += 1
    return "\n".join(kept).rstrip("\n") + "\n"


def safe_markdown(text: str) -> str:
    """Model text made safe to place in a body: no headings, rules or frontmatter fences."""
    out = []
    for line in text.splitlines():
        if _RULE.match(line.strip()):
            line = "—"
        elif line.lstrip().startswith("#"):
            line = "\\" + line.lstrip()
        out.append(line)
    return "\n".join(out).strip()
