"""Source files: loading messy real-world frontmatter and updating it once.

Sources are written by people and by older tools, so loading is lenient about
legacy keys and odd dates but strict about anything that would lose data
(duplicate keys, a frontmatter that is not a mapping).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from extractor.core.errors import ExtractorError
from extractor.kb.yamlio import describe_yaml_error, has_frontmatter, join_document, split_document

SOURCE_TYPES = {"source", "evidence", "archive"}
# Some legacy files put the format where the type belongs.
FORMAT_LIKE_TYPES = {
    "article",
    "essay",
    "newsletter",
    "news",
    "news article",
    "paper",
    "report",
    "thread",
    "tweet",
    "whitepaper",
}


class SourceStatus(StrEnum):
    UNPROCESSED = "unprocessed"
    PROCESSING = "processing"
    PROCESSED = "processed"
    NULL_RESULT = "null-result"
    UNKNOWN = "unknown"


NOT_A_FILE = "sources must be regular files inside the KB"
_CONTROL_IN_NAME = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class SourceError(ExtractorError):
    """A source file that cannot be used; the message names the file and the problem."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = str(path)
        self.problem = " ".join(str(problem).split())
        super().__init__(f"{self.path}: {self.problem}")


class Source(BaseModel):
    """A loaded source: the raw frontmatter plus the fields the pipeline reads."""

    model_config = ConfigDict(frozen=True)

    path: Path
    text: str
    metadata: dict[str, Any]
    body: str
    title: str
    url: str | None
    date: str | None
    domain: str | None
    format: str | None
    status: SourceStatus
    status_raw: str | None

    @property
    def slug(self) -> str:
        return self.path.stem

    @property
    def is_done(self) -> bool:
        return self.status in (SourceStatus.PROCESSED, SourceStatus.NULL_RESULT)


def normalise_status(metadata: dict[str, Any]) -> SourceStatus:
    """Map the status values found in real archives onto the lifecycle."""
    raw = metadata.get("status")
    if raw is None:
        if metadata.get("processed_date") or metadata.get("processed_by"):
            return SourceStatus.PROCESSED
        return SourceStatus.UNKNOWN
    value = str(raw).strip().lower()
    if value in {s.value for s in SourceStatus}:
        return SourceStatus(value)
    if value in {"null_result", "null result", "nullresult"}:
        return SourceStatus.NULL_RESULT
    if value.startswith("partial"):
        return SourceStatus.PROCESSING
    if value == "enrichment":
        return SourceStatus.PROCESSED
    return SourceStatus.UNKNOWN


def _text_field(metadata: dict[str, Any], *keys: str) -> str | None:
    """A one-line field: newlines and control characters in it would reach commit messages and prompts."""
    for key in keys:
        value = metadata.get(key)
        if value not in (None, ""):
            return " ".join(_CONTROL.sub(" ", str(value)).split()) or None
    return None


def check_size(path: Path | str, size: int, max_bytes: int | None) -> None:
    """Refuse a source over the size limit, before it is read or sent to a model."""
    if max_bytes is not None and size > max_bytes:
        raise SourceError(path, f"is {size:,} bytes, over the {max_bytes:,}-byte limit (max_source_bytes)")


def _check_kind(path: Path, info: os.stat_result, max_bytes: int | None) -> None:
    if stat.S_ISLNK(info.st_mode):
        raise SourceError(path, f"is a symbolic link; {NOT_A_FILE}")
    if not stat.S_ISREG(info.st_mode):
        raise SourceError(path, f"is not a regular file; {NOT_A_FILE}")
    check_size(path, info.st_size, max_bytes)


def check_source_file(path: Path, max_bytes: int | None = None) -> None:
    """Refuse, without reading it, what must not be used as a source.

    Symbolic links are refused rather than followed, since the source is
    rewritten in place; so are other non-files (a FIFO would block a reader),
    names with control characters (they would reach commit messages) and
    files over ``max_bytes``.
    """
    if _CONTROL_IN_NAME.search(path.name):
        raise SourceError(path, "the file name has control characters")
    try:
        info = path.lstat()
    except OSError as exc:
        raise SourceError(path, f"cannot read: {exc.strerror or exc}") from exc
    _check_kind(path, info, max_bytes)


def read_source_text(path: Path, max_bytes: int | None = None) -> str:
    """A source file's text: checked first, opened without following links, never read past the limit."""
    check_source_file(path, max_bytes)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as exc:
        raise SourceError(path, f"cannot read: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(descriptor, "rb") as handle:
            _check_kind(path, os.fstat(handle.fileno()), max_bytes)  # replaced since it was checked
            data = handle.read(-1 if max_bytes is None else max_bytes + 1)
    except OSError as exc:
        raise SourceError(path, f"cannot read: {exc.strerror or exc}") from exc
    check_size(path, len(data), max_bytes)  # grew since it was checked
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(path, f"not UTF-8 text (byte {exc.start})") from exc


def parse_source(path: Path, text: str, max_bytes: int | None = None) -> Source:
    """Build a :class:`Source` from a file's text; raises :class:`SourceError`."""
    if max_bytes is not None:
        check_size(path, len(text.encode("utf-8", "surrogatepass")), max_bytes)
    if "\x00" in text:
        raise SourceError(path, "binary content (NUL bytes)")
    if not has_frontmatter(text):
        raise SourceError(path, "no YAML frontmatter (expected a leading '---' block)")
    try:
        metadata, body = split_document(text)
    except yaml.YAMLError as exc:
        raise SourceError(path, f"invalid frontmatter: {describe_yaml_error(exc)}") from exc
    except ValueError as exc:
        raise SourceError(path, f"invalid frontmatter: {exc}") from exc

    type_raw = metadata.get("type")
    legacy_format = None
    if type_raw is not None:
        kind = str(type_raw).strip().lower()
        if kind in FORMAT_LIKE_TYPES:
            legacy_format = kind
        elif kind not in SOURCE_TYPES:
            raise SourceError(path, f"not a source (type: {type_raw})")

    title = _text_field(metadata, "title") or path.stem
    return Source(
        path=path,
        text=text,
        metadata=metadata,
        body=body,
        title=title,
        url=_text_field(metadata, "url", "source", "source_url"),
        date=_text_field(metadata, "date", "date_published", "source_date", "date_archived"),
        domain=_text_field(metadata, "domain"),
        format=_text_field(metadata, "format", "source_type") or legacy_format,
        status=normalise_status(metadata),
        status_raw=None if metadata.get("status") is None else str(metadata["status"]),
    )


def load_source(path: Path, max_bytes: int | None = None) -> Source:
    """Read and parse one source file; every failure is a one-line :class:`SourceError`."""
    return parse_source(path, read_source_text(path, max_bytes))


KEY_FACTS_HEADING = "## Key Facts"


def content_hash(text: str) -> str:
    """What a source's text is, for telling whether it changed since it was read."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def with_key_facts(text: str, facts: list[str]) -> str:
    """The source text with exactly one ``## Key Facts`` section at its end, holding ``facts``.

    An existing section (from an earlier extraction) is replaced, never stacked;
    with no facts the section is removed. The frontmatter and the rest of the
    body are left as they are.
    """
    lines = text.splitlines()
    closing = _frontmatter_end(lines)
    kept: list[str] = []
    skipping = False
    for number, line in enumerate(lines):
        if number > closing and line.strip().casefold() == KEY_FACTS_HEADING.casefold():
            skipping = True
            continue
        if skipping and (line.startswith("# ") or line.startswith("## ")):
            skipping = False
        if not skipping:
            kept.append(line)
    while kept and not kept[-1].strip() and len(kept) > closing + 1:
        kept.pop()
    result = "\n".join(kept)
    if facts:
        result += "\n\n" + KEY_FACTS_HEADING + "\n" + "\n".join(f"- {fact}" for fact in facts)
    return result + "\n"


def _frontmatter_end(lines: list[str]) -> int:
    """Index of the line that closes the frontmatter (-1 without one)."""
    fences = [i for i, line in enumerate(lines) if line.strip() == "---"]
    return fences[1] if len(fences) > 1 and fences[0] == 0 else -1


SOURCE_SCHEMA = "schemas/source.md"
# The key order of a new source when the KB has no schemas/source.md to take it from.
SOURCE_KEYS = ("type", "title", "author", "url", "date", "domain", "format", "status", "tags")
_SCHEMA_BLOCK = re.compile(r"```ya?ml\s*\n(.*?)```", re.DOTALL)
_SCHEMA_KEY = re.compile(r"^([A-Za-z_][\w-]*):", re.MULTILINE)


def source_key_order(kb_root: Path) -> list[str]:
    """The keys of the first YAML block of the KB's ``schemas/source.md``, in its order: new sources are
    written the way the KB documents them. The built-in order when there is none."""
    try:
        text = (kb_root / SOURCE_SCHEMA).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return list(SOURCE_KEYS)
    block = _SCHEMA_BLOCK.search(text)
    keys = _SCHEMA_KEY.findall(block.group(1)) if block else []
    return list(dict.fromkeys(keys)) if "title" in keys else list(SOURCE_KEYS)


def new_source_text(metadata: dict[str, Any], body: str, key_order: list[str]) -> str:
    """A new source file: the known keys in ``key_order``, any others after them, empty values left out."""
    present = {key: value for key, value in metadata.items() if value not in (None, "", [])}
    ordered = {key: present.pop(key) for key in key_order if key in present}
    return join_document({**ordered, **present}, body)
