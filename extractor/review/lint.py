"""``extractor validate``: the gates that apply to stored files, over a whole KB or some paths.

Sources: they must load (no duplicate keys, readable frontmatter) and carry a
status from the lifecycle. Claims: schema, no enrichment block inside the
frontmatter, a propositional title, a description that adds to it, wiki links
that resolve, and no near-duplicate title elsewhere in the KB. Entities: the
KB's entity schema (required fields, a known type allowed in the entity's
domain, dates), timeline bullets in the schema's format and in date order, and
one file per real-world object.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ValidationError
from rapidfuzz import fuzz, process

from extractor.core.settings import Settings
from extractor.extraction.gates import (
    DUPLICATE_SCORE,
    gate_description,
    gate_title,
    normalise,
    unlink_unresolved,
    unlink_where,
)
from extractor.extraction.prose import shown
from extractor.kb.claims import ClaimParseError, parse_claim
from extractor.kb.entities import TIMELINE_BULLET, EntityRef, name_key, parse_entity, timeline_bullets
from extractor.kb.entityschema import SCHEMA_PATH, EntitySchema, load_entity_schema
from extractor.kb.files import atomic_write
from extractor.kb.index import SKIP_DIRS, KBIndex
from extractor.kb.sources import SourceError, SourceStatus, load_source
from extractor.kb.yamlio import describe_yaml_error, split_document

_ENRICHMENT_MARK = re.compile(r"^(#+ *Additional Evidence|\*Source: \[\[)", re.M)
_AT_LINE = re.compile(r"\(line (\d+)\)$")
# A line no frontmatter holds and a body may: a heading, emphasis, a quote, a link, an image, a table row.
_MARKDOWN_LINE = re.compile(r"^ {0,3}(#{1,6} |\*{1,2}\S|> |\[\[|!\[|\|)")
_STARRED_VALUE = re.compile(r"^\s*(?:-\s+|[^:#]+:\s+)\*")  # "key: *text*" or "- *text*": meant as text


class Problem(BaseModel):
    path: str
    check: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.check}: {self.message}"


class LintReport(BaseModel):
    files: int = 0
    claims: int = 0
    sources: int = 0
    entities: int = 0
    problems: list[Problem] = []
    links_unlinked: dict[str, int] = {}
    unlinked: dict[str, list[str]] = {}  # with fix_links: per file, the targets of the links unlinked

    def totals(self) -> Counter[str]:
        return Counter(p.check for p in self.problems)


def frontmatter_text(text: str) -> str:
    lines = text.strip().splitlines()
    if not lines or lines[0].strip() != "---":
        return ""
    for number, line in enumerate(lines[1:], start=1):
        if line.strip() == "---":
            return "\n".join(lines[1:number])
    return "\n".join(lines[1:])


def check_source(rel: str, path: Path) -> list[Problem]:
    try:
        source = load_source(path)
    except SourceError as exc:
        return [Problem(path=rel, check="source", message=exc.problem)]
    if source.status is SourceStatus.UNKNOWN or (
        source.status_raw is not None and source.status_raw.strip() not in {s.value for s in SourceStatus}
    ):
        return [Problem(path=rel, check="status", message=f"status {source.status_raw!r} is outside the lifecycle")]
    return []


def frontmatter_message(text: str, message: str) -> str:
    """The YAML reader's complaint about a frontmatter, said as the problem a person would fix.

    Body text inside the frontmatter (its closing ``---`` missing or misplaced) reads as broken YAML: an
    italic ``*Source: ...*`` line as an alias, a ``> quote`` as a stray indicator. The line the reader stopped
    at tells which: Markdown there means the frontmatter runs into the body."""
    found = _AT_LINE.search(message)
    lines = text.strip().splitlines()
    if found is None or not 1 <= int(found.group(1)) <= len(lines):
        return message
    number, line = int(found.group(1)), lines[int(found.group(1)) - 1]
    if _MARKDOWN_LINE.match(line):
        return f"line {number} is Markdown, not YAML ({shown(line, 60)}): the frontmatter has no closing '---' above it"
    if "aliases (*name)" in message and _STARRED_VALUE.match(line):
        return f"line {number}: a value starting with '*' reads as a YAML alias ({shown(line, 60)}); put it in quotes"
    return message


def unresolved_links(text: str, index: KBIndex) -> list[str]:
    """The targets of the wiki links that resolve to no note, in order; read the way :func:`unlink_unresolved`
    reads them (``[[x|alias]]``, ``[[x#section]]``: note ``x``), so what is reported is what a fix unlinks."""
    missing: list[str] = []

    def resolves(target: str) -> bool:
        found = index.resolve_link(target)[0] is not None
        if not found:
            missing.append(target.strip())
        return found

    unlink_where(text, resolves)
    return missing


def check_claim(
    rel: str, text: str, index: KBIndex, fix_links: bool, report: LintReport, titles: dict[str, str]
) -> list[Problem]:
    """One claim's problems; with ``fix_links`` its unresolved links are unlinked first (the file is written)
    and only what remains is reported."""
    problems: list[Problem] = []
    block = _ENRICHMENT_MARK.search(frontmatter_text(text))
    if block:
        number = text.strip()[: text.strip().index(block.group(0))].count("\n") + 1
        message = f"an enrichment block sits inside the frontmatter (line {number}): move it below the closing '---'"
        problems.append(Problem(path=rel, check="frontmatter", message=message))
    try:
        document = parse_claim(text, fallback_title=PurePosixPath(rel).stem)
    except ClaimParseError as exc:
        if block:  # the reader choked on that block's lines: one problem, said once
            return problems
        return [*problems, Problem(path=rel, check="frontmatter", message=frontmatter_message(text, str(exc)))]
    titles[rel] = document.title
    try:
        document.frontmatter()
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"])
            problems.append(Problem(path=rel, check="schema", message=f"{field}: {error['msg']}"))
    problems += [Problem(path=rel, check=f.gate, message=f.message) for f in gate_title(document.title)]
    description = str(document.metadata.get("description") or "")
    if description:
        problems += [
            Problem(path=rel, check=f.gate, message=f.message) for f in gate_description(document.title, description)
        ]
    unresolved = unresolved_links(text, index)
    if unresolved and fix_links:
        fixed, count = unlink_unresolved(text, index)
        atomic_write(index.root / rel, fixed)
        report.links_unlinked[rel] = count
        report.unlinked[rel] = unresolved
        unresolved = unresolved_links(fixed, index)
    if unresolved:
        listed = ", ".join(f"[[{link}]]" for link in unresolved[:3]) + (" ..." if len(unresolved) > 3 else "")
        problems.append(Problem(path=rel, check="links", message=f"{len(unresolved)} unresolved: {listed}"))
    return problems


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def check_entity(rel: str, text: str, schema: EntitySchema) -> list[Problem]:
    """One entity note against the KB's entity schema."""
    try:
        metadata, body = split_document(text)
    except Exception as exc:  # noqa: BLE001 - any unreadable frontmatter is one problem of this file
        message = frontmatter_message(text, f"invalid frontmatter: {describe_yaml_error(exc)}")
        return [Problem(path=rel, check="entity", message=message)]
    problems = []
    missing = [name for name in schema.required if metadata.get(name) in (None, "", [])]
    if missing:
        problems.append(Problem(path=rel, check="entity", message=f"missing required field(s): {', '.join(missing)}"))
    entity_type = str(metadata.get("entity_type") or "")
    domain = str(metadata.get("domain") or "")
    if entity_type and entity_type not in schema.types:
        problems.append(Problem(path=rel, check="entity", message=f"entity_type {entity_type!r} is not in the schema"))
    elif entity_type and domain and entity_type not in schema.types_for(domain):
        home = schema.types[entity_type].domain
        problems.append(Problem(path=rel, check="entity",
                                message=f"entity_type {entity_type!r} belongs to {home}, not {domain}"))  # fmt: skip
    for name in ("created", "last_updated", "proposal_date", "resolution_date"):
        value = metadata.get(name)
        if value not in (None, "") and not _DATE.match(str(value)):
            problems.append(Problem(path=rel, check="entity", message=f"{name} {value!r} is not a YYYY-MM-DD date"))
    problems += _timeline_problems(rel, body)
    return problems


def _timeline_problems(rel: str, body: str) -> list[Problem]:
    section = timeline_bullets(body)
    dated = [TIMELINE_BULLET.match(line) for line in section]
    odd = [line for line, found in zip(section, dated, strict=True) if found is None]
    problems = []
    if odd:
        message = f"{len(odd)} bullet(s) not '- **YYYY-MM-DD** — event': {odd[0][:60]}"
        problems.append(Problem(path=rel, check="timeline", message=message))
    dates = [found.group(1) for found in dated if found is not None]
    if dates != sorted(dates):
        problems.append(Problem(path=rel, check="timeline", message="bullets are not in date order"))
    return problems


def duplicate_entities(entities: list[EntityRef]) -> list[Problem]:
    """Two files for one real-world object: the same name once case and punctuation are set aside."""
    first: dict[str, str] = {}
    problems = []
    for ref in entities:
        key = name_key(ref.name)
        if key in first:
            problems.append(Problem(path=ref.path, check="entity", message=f"the same entity as {first[key]}"))
        else:
            first[key] = ref.path
    return problems


def near_duplicates(titles: dict[str, str]) -> list[Problem]:
    """Pairs of claims whose titles are near-identical (rapidfuzz token-set ratio)."""
    paths = list(titles)
    normalised = [normalise(titles[p]) for p in paths]
    scores = process.cdist(normalised, normalised, scorer=fuzz.token_set_ratio, score_cutoff=DUPLICATE_SCORE, workers=1)
    problems = []
    for i in range(len(paths)):
        for j in range(i + 1, len(paths)):
            if scores[i][j] >= DUPLICATE_SCORE:
                message = f"near-duplicate title ({scores[i][j]:.0f}) of {paths[j]}"
                problems.append(Problem(path=paths[i], check="duplicate", message=message))
    return problems


def lint(kb_root: Path, settings: Settings, paths: list[Path] | None = None, fix_links: bool = False) -> LintReport:
    index = KBIndex.load(kb_root, exclude=[settings.inbox_dir])
    report = LintReport()
    if paths:
        files = [p.resolve() for given in paths for p in ([given] if given.is_file() else sorted(given.rglob("*.md")))]
    else:
        files = [p for p in sorted(kb_root.rglob("*.md")) if not SKIP_DIRS.intersection(p.relative_to(kb_root).parts)]
    inbox = PurePosixPath(settings.inbox_dir)
    titles: dict[str, str] = {}
    entities: list[EntityRef] = []
    schemas: dict[Path, EntitySchema] = {}
    for path in files:
        rel = path.resolve().relative_to(kb_root.resolve()).as_posix()
        report.files += 1
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            report.problems.append(Problem(path=rel, check="file", message=f"cannot read: {exc}"))
            continue
        if PurePosixPath(rel).is_relative_to(inbox):
            report.sources += 1
            report.problems += check_source(rel, path)
            continue
        if _type_of(text) == "entity":
            report.entities += 1
            schema = _schema_for(path, kb_root, schemas)
            report.problems += check_entity(rel, text, schema)
            ref = parse_entity(rel, text)
            if ref is not None:
                entities.append(ref)
            continue
        if not _is_claim(text):
            continue
        report.claims += 1
        report.problems += check_claim(rel, text, index, fix_links, report, titles)
    report.problems += near_duplicates(titles)
    report.problems += duplicate_entities(entities)
    return report


def _schema_for(path: Path, kb_root: Path, schemas: dict[Path, EntitySchema]) -> EntitySchema:
    """The entity schema of the nearest ``schemas/entity.md`` above the file, up to the KB root; else the
    KB root's (the built-in one when it has none)."""
    root = kb_root.resolve()
    for folder in path.resolve().parents:
        if folder in schemas:
            return schemas[folder]
        if (folder / SCHEMA_PATH).is_file() or folder == root:
            schemas[folder] = load_entity_schema(folder)
            return schemas[folder]
        if not folder.is_relative_to(root):
            break
    return schemas.setdefault(root, load_entity_schema(root))


def _type_of(text: str) -> str:
    found = re.search(r"^type:\s*(\S+)\s*$", frontmatter_text(text), re.M)
    return found.group(1).strip("'\"") if found else ""


def _is_claim(text: str) -> bool:
    try:
        metadata, _ = split_document(text)
    except Exception:  # noqa: BLE001 - a broken frontmatter still counts as a claim if it says so
        return bool(re.search(r"^type:\s*claim\s*$", frontmatter_text(text), re.M))
    return metadata.get("type") == "claim"
