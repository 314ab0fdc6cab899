"""Turning an :class:`ExtractionResult` into files and one commit.

Planning is pure: it computes every new file's full text and the commit
message. Applying writes each file atomically (temp file + rename), commits
exactly those paths, and puts every file back if anything fails, so a failed
source leaves the KB as it was.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import re
import tempfile
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, Field
from slugify import slugify

from extractor.answer import one_line
from extractor.claims import (
    ClaimDocument,
    ClaimFrontmatter,
    Section,
    bullet_list,
    insert_before_footer,
    remove_enrichment_blocks,
    render_claim,
    safe_markdown,
)
from extractor.config import Settings
from extractor.extract import ExtractionResult, ResolvedClaim, previous_drafts
from extractor.gitrepo import (
    GitError,
    Identity,
    build_commit,
    commit_tree_on,
    head,
    is_ancestor,
    move_ref,
    rev_parse,
    sync_index,
)
from extractor.kb import KBIndex
from extractor.kbview import KBView, RevisionView, WorktreeView
from extractor.redact import known_secrets, redact_values
from extractor.sources import Source, with_key_facts
from extractor.state import STATE_DIR, ensure_state_dir
from extractor.yamlio import replace_frontmatter_keys

SLUG_MAX = 120
WINDOWS_RESERVED = {
    "con",
    "prn",
    "aux",
    "nul",
    *(f"com{i}" for i in range(10)),
    *(f"lpt{i}" for i in range(10)),
}
_SAFE_SEGMENT = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class WriteError(RuntimeError):
    """The drafts cannot be written; nothing was changed."""


class FileChange(BaseModel):
    path: str  # relative to the KB root
    text: str | None  # None deletes the file


class ChangeSet(BaseModel):
    changes: list[FileChange]
    message: str
    claim_titles: list[str]
    claim_paths: list[str]
    enriched_titles: list[str]
    status: str
    notes: list[str] = Field(default_factory=list)


def slug_for(title: str) -> str:
    """A file stem for a title: kebab-case ASCII, bounded, never a reserved name."""
    slug = slugify(title, max_length=SLUG_MAX, word_boundary=True, save_order=True) or "claim"
    if slug in WINDOWS_RESERVED:
        slug += "-claim"
    return slug


def unique_name(slug: str, taken: set[str]) -> str:
    name, number = f"{slug}.md", 2
    while name.casefold() in taken:
        name, number = f"{slug}-{number}.md", number + 1
    taken.add(name.casefold())
    return name


def domain_folder(domain: str) -> str:
    folder = slugify(domain) if domain else ""
    if not folder or not _SAFE_SEGMENT.match(folder):
        raise WriteError(f"source has no usable domain ({domain!r})")
    return folder


def attribution(source: Source) -> str:
    author = one_line(str(source.metadata.get("author") or ""))
    parts = [p for p in (author, one_line(source.title)) if p]
    text = ", ".join(parts)
    return f"{text} ({source.date})" if source.date else text


def claim_document(
    resolved: ResolvedClaim, source: Source, domain: str, today: str, topics: list[str], known_domains: list[str]
) -> ClaimDocument:
    draft = resolved.draft
    secondary = [d for d in dict.fromkeys(slugify(s) for s in draft.secondary_domains) if d in known_domains]
    frontmatter = ClaimFrontmatter(
        domain=domain,
        description=draft.description,
        confidence=draft.confidence,
        source=attribution(source),
        created=today,
        secondary_domains=[d for d in secondary if d != domain] or None,
    )
    sections = [Section(heading="Evidence", body=bullet_list([safe_markdown(e) for e in draft.evidence]))]
    sections.append(
        Section(
            heading="Limitations",
            body=bullet_list([safe_markdown(item) for item in draft.limitations]) or "- None stated.",
        )
    )
    return ClaimDocument(
        metadata=frontmatter.as_metadata(),
        title=draft.title,
        argument=safe_markdown(draft.argument),
        sections=sections,
        relevant_notes=[f"[[{ref.stem}]]" for ref in resolved.related],
        topics=topics,
    )


def enrichment_block(kind: str, source_slug: str, today: str, model: str, evidence: str) -> str:
    return (
        f"### Additional Evidence ({kind})\n"
        f"*Source: [[{source_slug}]] | Added: {today} | Extractor: {one_line(model)}*\n\n"
        f"{one_line(evidence)}\n"
    )


def commit_message(result: ExtractionResult, source_file: str, settings: Settings, worker: int, runner: str) -> str:
    name = PurePosixPath(source_file).name
    return (
        f"{result.agent}: extract claims from {name}\n\n"
        f"- Source: {source_file}\n"
        f"- Domain: {one_line(result.domain)}\n"
        f"- Extracted by: {runner} (worker {worker})\n\n"
        f"{settings.agent_trailer_key}: {settings.agent_identity_for(result.agent)}\n"
        f"Extraction-Model: {one_line(result.model)}\n"
        f"Extraction-Prompt: {result.prompt_hash}\n"
    )


def null_result_reason(result: ExtractionResult) -> str:
    """Why nothing was written: the model's reason, or the gates' when they dropped every claim."""
    if result.drafted_claims == 0 and not result.answer.enrichments:
        return result.answer.null_result_reason or "The model found nothing worth extracting."
    return one_line(f"No claim passed the checks: {'; '.join(result.dropped) or 'none given'}")


def extraction_notes(result: ExtractionResult) -> str:
    parts = [result.answer.notes] if result.answer.notes else []
    if result.parts > 1:
        parts.append(f"Read in {result.parts} overlapping parts.")
    if result.part_notes:
        parts.append("Parts: " + "; ".join(result.part_notes) + ".")
    anchors = [anchor for claim in result.claims for anchor in claim.anchors]
    if anchors:
        found = sum(anchor.method != "paraphrase" for anchor in anchors)
        by_claim = [
            f"{sum(a.method != 'paraphrase' for a in claim.anchors)} of {len(claim.anchors)}" for claim in result.claims
        ]
        detail = f" (by claim, in order: {', '.join(by_claim)})" if len(by_claim) > 1 else ""
        parts.append(f"Evidence found in the source: {found} of {len(anchors)} items{detail}; the rest is paraphrase.")
    if result.dropped:
        parts.append("Dropped: " + "; ".join(result.dropped))
    return one_line(" ".join(parts)) or "No notes."


def plan_changes(
    kb_root: Path,
    source: Source,
    result: ExtractionResult,
    settings: Settings,
    index: KBIndex,
    today: str,
    worker: int,
    runner: str,
    replace_previous: bool,
    view: KBView | None = None,
) -> ChangeSet:
    """Every file this extraction writes, as full texts, plus the commit message.

    ``view`` is what the KB looks like to the plan (the work tree by default;
    the main branch's tree in branch mode).
    """
    view = view or WorktreeView(kb_root)
    domain = domain_folder(result.domain)
    claims_root = PurePosixPath(settings.claims_dir)
    folder = claims_root / domain
    texts: dict[str, str | None] = {}

    def current(path: str) -> str | None:
        return texts[path] if path in texts else view.read(path)

    kept: list[str] = []
    if replace_previous:
        # Only claims an extraction of this very source added: the source's own claims_extracted list
        # could name anyone's claims (hand-edited, or hostile), and --force must not delete those.
        for path in sorted(previous_drafts(source, index, settings.claims_dir)):
            if view.added_by(path) == result.source_path:
                texts[path] = None
            else:
                kept.append(path)
        for title in _as_list(source.metadata.get("enrichments_applied")):
            ref = index.resolve(title)
            if ref is not None and (text := current(ref.path)) is not None:
                texts[ref.path] = remove_enrichment_blocks(text, source.slug)

    existing = view.names(str(folder))
    taken = set(_casefolded_claim_names(frozenset(existing)))
    taken -= {
        PurePosixPath(p).name.casefold() for p, t in texts.items() if t is None and PurePosixPath(p).parent == folder
    }
    topics = ["[[_map]]"] if "_map.md" in existing else []
    claim_titles, claim_paths = [], []
    for resolved in result.claims:
        path = str(folder / unique_name(slug_for(resolved.draft.title), taken))
        document = claim_document(resolved, source, result.domain, today, topics, settings.domains)
        texts[path] = render_claim(document)
        claim_titles.append(resolved.draft.title)
        claim_paths.append(path)

    enriched_titles = []
    for enrichment in result.enrichments:
        text = current(enrichment.target.path)
        if text is None:
            continue
        block = enrichment_block(
            enrichment.draft.kind.value, source.slug, today, result.model, enrichment.draft.evidence
        )
        texts[enrichment.target.path] = insert_before_footer(text, block)
        enriched_titles.append(enrichment.target.title)

    status = "processed" if claim_titles or enriched_titles else "null-result"
    updates: dict[str, object] = {
        "status": status,
        "processed_by": result.agent,
        "processed_date": today,
        "claims_extracted": claim_titles,
        "enrichments_applied": enriched_titles,
        "extraction_model": result.model,
        "extraction_notes": extraction_notes(result),
    }
    if status == "null-result":
        updates["notes"] = null_result_reason(result)
    facts = [safe_markdown(fact) for fact in result.answer.key_facts]
    source_text = view.read(result.source_path)
    if source_text is None:
        raise WriteError(f"{result.source_path} is not on the branch the drafts are based on")
    texts[result.source_path] = with_key_facts(replace_frontmatter_keys(source_text, updates), facts)

    # The model may repeat a secret it was shown or guessed; the KB is shared, so known secret values never reach it.
    secrets = known_secrets()
    changes = [FileChange(path=p, text=t if t is None else redact_values(t, secrets)) for p, t in texts.items()]
    for change in changes:
        _check_inside(kb_root, change.path, settings, result.source_path)
    return ChangeSet(
        changes=changes,
        message=redact_values(commit_message(result, result.source_path, settings, worker, runner), secrets),
        claim_titles=claim_titles,
        claim_paths=claim_paths,
        enriched_titles=enriched_titles,
        status=status,
        notes=[f"kept {path}: no extraction of this source added it" for path in kept],
    )


@functools.lru_cache(maxsize=4)
def _casefolded_claim_names(names: frozenset[str]) -> frozenset[str]:
    # Kept: a folder of 10,000 claims is the same listing for every source planned against one main.
    return frozenset(name.casefold() for name in names if name.endswith(".md"))


def _as_list(value: object) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value if v]
    return [str(value)] if value else []


def _check_inside(kb_root: Path, path: str, settings: Settings, source_path: str) -> None:
    """Writes go only to the claims folders and the source itself, and never through a symbolic link.

    A link anywhere on the way (the file, its folder, the inbox) could lead the
    write out of the KB, or past git, which records the link and not the file.
    """
    root = kb_root.resolve()
    literal = Path(os.path.normpath(root / path))
    if not literal.is_relative_to(root) or literal == root:
        raise WriteError(f"refusing to write outside the knowledge base: {path}")
    if literal.resolve() != literal:
        raise WriteError(f"refusing to write through a symbolic link: {path}")
    if literal == Path(os.path.normpath(root / source_path)):
        return
    if not any(literal.is_relative_to(os.path.normpath(root / d)) for d in settings.writable_claim_dirs):
        raise WriteError(f"refusing to write outside the claims folders: {path}")


def atomic_write(path: Path, text: str) -> None:
    """Write via a temp file in the same folder and rename, so no reader sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:40]}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


JOURNAL = "journal.json"


class Journal(BaseModel):
    """What a write in progress changes, so a crash at any point can be settled.

    ``commit`` is recorded once the commit object exists and before HEAD
    moves: with it, recovery finishes the write (every file is in place);
    without it, HEAD cannot have moved and recovery puts the files back.
    """

    source_path: str
    head: str | None
    originals: dict[str, str | None]
    commit: str | None = None


def apply_changes(kb_root: Path, changeset: ChangeSet, author: Identity, source_path: str | None = None) -> str:
    """Write the files and commit them; on any failure restore what was there.

    A journal of the original contents is written first and removed after the
    commit, so :func:`recover_interrupted_write` can finish or undo a write
    that a crash cut short.
    """
    originals: dict[str, str | None] = {}
    new_dirs: list[Path] = []
    for change in changeset.changes:
        file = kb_root / change.path
        originals[change.path] = file.read_text(encoding="utf-8") if file.is_file() else None
        missing = [d for d in [file.parent, *file.parent.parents] if not d.exists()]
        new_dirs.extend(d for d in missing if d not in new_dirs)
    journal = ensure_state_dir(kb_root) / JOURNAL
    paths = [c.path for c in changeset.changes]
    record = Journal(source_path=source_path or paths[-1], head=head(kb_root), originals=originals)
    atomic_write(journal, record.model_dump_json())
    commit: str | None = None
    try:
        for change in changeset.changes:
            file = kb_root / change.path
            if change.text is None:
                file.unlink(missing_ok=True)
            else:
                atomic_write(file, change.text)
        commit, parent = build_commit(kb_root, paths, changeset.message, author)
        atomic_write(journal, record.model_copy(update={"commit": commit}).model_dump_json())
        move_ref(kb_root, "HEAD", commit, parent)
    except BaseException:
        if commit is not None and head(kb_root) == commit:
            journal.unlink(missing_ok=True)  # interrupted after HEAD moved: the commit stands
            raise
        _restore(kb_root, originals, new_dirs)
        journal.unlink(missing_ok=True)
        raise
    sync_index(kb_root, commit, paths)
    journal.unlink(missing_ok=True)
    return commit


def recover_interrupted_write(kb_root: Path) -> str | None:
    """Finish or undo a write that a crash interrupted; says which, or None if there was none.

    Call it holding the write lock. It also clears what a killed write leaves
    behind: temp files next to the files it wrote and private git indexes.
    """
    journal = kb_root / STATE_DIR / JOURNAL
    _remove_temp_files(journal)
    if not journal.is_file():
        return None
    try:
        record = Journal.model_validate_json(journal.read_text(encoding="utf-8"))
    except ValueError:
        journal.unlink(missing_ok=True)
        return "discarded an unreadable write journal"
    paths = list(record.originals)
    for path in paths:
        _remove_temp_files(kb_root / path)
    if record.commit is not None and _settle_commit(kb_root, record.commit, record.head):
        sync_index(kb_root, record.commit, paths)
        outcome = f"completed the interrupted commit of {record.source_path}"
    else:
        _restore(kb_root, record.originals, [])
        outcome = f"undid the interrupted write of {record.source_path}"
    journal.unlink(missing_ok=True)
    return outcome


def _settle_commit(kb_root: Path, commit: str, old_head: str | None) -> bool:
    """Whether ``commit`` is (now) on HEAD: moves HEAD to it if a crash stopped just before that."""
    current = head(kb_root)
    if current == old_head:
        with contextlib.suppress(GitError):
            move_ref(kb_root, "HEAD", commit, old_head)
        current = head(kb_root)
    return current is not None and is_ancestor(kb_root, commit, current)


def _remove_temp_files(path: Path) -> None:
    """Temp files :func:`atomic_write` left beside ``path`` when killed before its rename."""
    for leftover in path.parent.glob(f"{glob.escape('.' + path.name[:40])}.*.tmp"):
        leftover.unlink(missing_ok=True)


def _restore(kb_root: Path, originals: dict[str, str | None], new_dirs: list[Path]) -> None:
    for path, text in originals.items():
        file = kb_root / path
        if text is None:
            file.unlink(missing_ok=True)
        else:
            atomic_write(file, text)
    for folder in sorted(new_dirs, key=lambda d: len(d.parts), reverse=True):
        with contextlib.suppress(OSError):
            folder.rmdir()


def extraction_branch(source_slug: str) -> str:
    return f"extract/{slug_for(source_slug)}"


def commit_to_branch(
    kb_root: Path, changeset: ChangeSet, author: Identity, base: str, branch: str, replace: bool
) -> str:
    """Commit the drafts on ``branch``, made from ``base``; the work tree is not touched.

    A branch that already exists is an extraction awaiting review: it is only
    replaced (a new tip from ``base``) when ``replace`` is set.
    """
    old = rev_parse(kb_root, f"refs/heads/{branch}")
    if old is not None and not replace:
        raise WriteError(f"{branch} already awaits review; use --force to replace it")
    files = {change.path: change.text for change in changeset.changes}
    commit = commit_tree_on(kb_root, base, files, changeset.message, author)
    move_ref(kb_root, f"refs/heads/{branch}", commit, old)
    return commit


def planning_view(kb_root: Path, settings: Settings) -> tuple[KBView, str | None]:
    """What to plan against, and the base commit: main's tip in branch mode, the work tree otherwise."""
    if settings.commit_mode == "main":
        return WorktreeView(kb_root), None
    base = rev_parse(kb_root, f"refs/heads/{settings.main_branch}")
    if base is None:
        raise WriteError(f"branch mode needs the main branch {settings.main_branch!r}, which does not exist")
    return RevisionView(kb_root, base), base


def commit_extraction(
    kb_root: Path,
    changeset: ChangeSet,
    settings: Settings,
    source_path: str,
    source_slug: str,
    base: str | None,
    replace: bool,
) -> tuple[str, str | None]:
    """Commit planned drafts the configured way; returns the commit and the branch (None on main)."""
    author = Identity(name=settings.author_name, email=settings.author_email)
    if base is None:
        recover_interrupted_write(kb_root)
        return apply_changes(kb_root, changeset, author, source_path=source_path), None
    branch = extraction_branch(source_slug)
    return commit_to_branch(kb_root, changeset, author, base, branch, replace), branch
