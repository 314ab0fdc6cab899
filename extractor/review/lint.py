"""``extractor validate``: the gates that apply to stored files, over a whole KB or some paths.

Sources: they must load (no duplicate keys, readable frontmatter) and carry a
status from the lifecycle. Claims: schema, no enrichment block inside the
frontmatter, a propositional title, a description that adds to it, wiki links
that resolve, and no near-duplicate title elsewhere in the KB.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ValidationError
from rapidfuzz import fuzz, process

from extractor.core.settings import Settings
from extractor.extraction.gates import DUPLICATE_SCORE, gate_description, gate_title, normalise, unlink_unresolved
from extractor.kb.claims import ClaimParseError, parse_claim, wiki_links
from extractor.kb.files import atomic_write
from extractor.kb.index import SKIP_DIRS, KBIndex
from extractor.kb.sources import SourceError, SourceStatus, load_source
from extractor.kb.yamlio import split_document

_ENRICHMENT_MARK = re.compile(r"^(#+ *Additional Evidence|\*Source: \[\[)", re.M)


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
    problems: list[Problem] = []
    links_unlinked: dict[str, int] = {}

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


def check_claim(
    rel: str, text: str, index: KBIndex, fix_links: bool, report: LintReport, titles: dict[str, str]
) -> list[Problem]:
    problems: list[Problem] = []
    if _ENRICHMENT_MARK.search(frontmatter_text(text)):
        problems.append(
            Problem(path=rel, check="frontmatter", message="an enrichment block sits inside the frontmatter")
        )
    try:
        document = parse_claim(text, fallback_title=PurePosixPath(rel).stem)
    except ClaimParseError as exc:
        return [*problems, Problem(path=rel, check="frontmatter", message=str(exc))]
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
    unresolved = [link for link in wiki_links(text) if index.resolve_link(link)[0] is None]
    if unresolved:
        shown = ", ".join(f"[[{link}]]" for link in unresolved[:3]) + (" ..." if len(unresolved) > 3 else "")
        problems.append(Problem(path=rel, check="links", message=f"{len(unresolved)} unresolved: {shown}"))
        if fix_links:
            fixed, count = unlink_unresolved(text, index)
            atomic_write(index.root / rel, fixed)
            report.links_unlinked[rel] = count
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
        if not _is_claim(text):
            continue
        report.claims += 1
        report.problems += check_claim(rel, text, index, fix_links, report, titles)
    report.problems += near_duplicates(titles)
    return report


def _is_claim(text: str) -> bool:
    try:
        metadata, _ = split_document(text)
    except Exception:  # noqa: BLE001 - a broken frontmatter still counts as a claim if it says so
        return bool(re.search(r"^type:\s*claim\s*$", frontmatter_text(text), re.M))
    return metadata.get("type") == "claim"
