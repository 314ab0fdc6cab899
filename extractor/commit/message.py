"""The commit format, written and read here alone: an extraction's message and trailers, a rejection's, and the
branch each extraction waits on for review (``extract/<source slug>``).

Everything in a message comes from the system (the routing table, the worker
pool, the settings) or is put on one line first; readers get it back with
:func:`parse_message`.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from extractor.core.errors import ConfigurationError
from extractor.core.records import Record
from extractor.core.text import one_line
from extractor.kb.names import slug_for

BRANCH_PREFIX = "extract/"
MODEL_TRAILER = "Extraction-Model"
PROMPT_TRAILER = "Extraction-Prompt"

_TRAILER = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*): ?(.*)$")
_SOURCE = re.compile(r"^- Source: (.+)$", re.M)
_DOMAIN = re.compile(r"^- Domain: (.*)$", re.M)
_EXTRACTED_BY = re.compile(r"^- Extracted by: (.*) \(worker (\d+)\)$", re.M)
_REJECTED = re.compile(r"^- Rejected: (.*)$", re.M)


class BranchNameError(ConfigurationError):
    """A name that is not an extraction branch's slug: given by a person, a usage error."""


class CommitInfo(Record):
    """What an extraction (or rejection) commit says about itself."""

    agent: str  # the subject's prefix: the agent the routing table chose
    source: str
    domain: str | None = None
    runner: str | None = None
    worker: int | None = None
    identity: str = ""  # the agent trailer's value
    model: str = ""
    prompt_hash: str = ""
    rejected: str | None = None  # the reason, for a rejection


def extraction_message(
    *,
    agent: str,
    source_path: str,
    domain: str,
    runner: str,
    worker: int,
    trailer_key: str,
    identity: str,
    model: str,
    prompt_hash: str,
) -> str:
    name = PurePosixPath(source_path).name
    return (
        f"{agent}: extract claims from {name}\n\n"
        f"- Source: {source_path}\n"
        f"- Domain: {one_line(domain)}\n"
        f"- Extracted by: {runner} (worker {worker})\n\n"
        f"{trailer_key}: {identity}\n"
        f"{MODEL_TRAILER}: {one_line(model)}\n"
        f"{PROMPT_TRAILER}: {prompt_hash}\n"
    )


FIX_TRAILER = "Review-Fix-For"


def fix_message(agent: str, branch: str, for_commit: str, notes: list[str], trailer_key: str, identity: str) -> str:
    """The follow-up commit that fixes an extraction branch's mechanical review findings."""
    return (
        f"{agent}: fix mechanical review findings on {branch}\n\n"
        + "".join(f"- {one_line(note)}\n" for note in notes)
        + f"\n{trailer_key}: {identity}\n{FIX_TRAILER}: {for_commit}\n"
    )


def is_fix_commit(message: str) -> bool:
    return FIX_TRAILER in trailers(message)


def rejection_message(agent: str, source_path: str, reason: str) -> str:
    return (
        f"{agent}: reject extraction of {PurePosixPath(source_path).name}\n\n"
        f"- Source: {source_path}\n- Rejected: {one_line(reason)}\n"
    )


def trailers(message: str) -> dict[str, str]:
    """The trailers of the message's last paragraph (continuation lines unfolded), as git reads them."""
    paragraphs = [p for p in message.strip().split("\n\n") if p.strip()]
    if len(paragraphs) < 2:
        return {}
    found: dict[str, str] = {}
    last: str | None = None
    for line in paragraphs[-1].splitlines():
        if line[:1].isspace() and last is not None:
            found[last] = f"{found[last]} {line.strip()}".strip()
            continue
        match = _TRAILER.match(line)
        if match is None:
            return {}  # not a trailer block
        last = match.group(1)
        found.setdefault(last, match.group(2).strip())
    return found


def parse_message(message: str, trailer_key: str) -> CommitInfo | None:
    """An extraction or rejection commit's details; None for any other commit."""
    source = _SOURCE.search(message)
    if source is None:
        return None
    domain = _DOMAIN.search(message)
    extracted_by = _EXTRACTED_BY.search(message)
    rejected = _REJECTED.search(message)
    found = trailers(message)
    return CommitInfo(
        agent=message.split(":", 1)[0].strip(),
        source=source.group(1).strip(),
        domain=domain.group(1).strip() if domain else None,
        runner=extracted_by.group(1) if extracted_by else None,
        worker=int(extracted_by.group(2)) if extracted_by else None,
        identity=found.get(trailer_key, ""),
        model=found.get(MODEL_TRAILER, ""),
        prompt_hash=found.get(PROMPT_TRAILER, ""),
        rejected=rejected.group(1).strip() if rejected else None,
    )


def extraction_branch(source_slug: str) -> str:
    return BRANCH_PREFIX + slug_for(source_slug)


def branch_for(slug: str) -> str:
    """The branch a reviewer names by its slug (or by the branch itself); never a revision expression."""
    name, slug = slug, slug.removeprefix(BRANCH_PREFIX)
    if not slug or "/" in slug or slug.startswith(".") or not re.fullmatch(r"[A-Za-z0-9._-]+", slug) or ".." in slug:
        raise BranchNameError(f"not an extraction branch: {name!r}")
    return BRANCH_PREFIX + slug
