"""Planning: an :class:`ExtractionResult` turned into every file's full new text and the commit message.

Pure apart from reading the KB through a view (the work tree, or the main
branch's tree): nothing is written here. The service plans while it holds the
write lock, against the files as they are then, and :mod:`extractor.commit.apply`
writes the plan.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from pathlib import Path, PurePosixPath

from slugify import slugify

from extractor.commit.changeset import ChangeSet, WriteError
from extractor.commit.entityplan import as_list, plan_entities, take_back
from extractor.commit.message import extraction_message, parse_message
from extractor.core.records import ClaimReport, ExtractionReport, FileChange, anchored_share
from extractor.core.redact import known_secrets, redact_values
from extractor.core.settings import Settings
from extractor.core.text import one_line
from extractor.extraction.extract import ExtractionResult, ResolvedClaim, previous_drafts
from extractor.extraction.gates import GATES
from extractor.kb.claims import (
    ClaimDocument,
    ClaimFrontmatter,
    Section,
    bullet_list,
    insert_before_footer,
    remove_enrichment_blocks,
    render_claim,
    safe_markdown,
)
from extractor.kb.gitrepo import rev_parse
from extractor.kb.index import KBIndex
from extractor.kb.layout import folder_for
from extractor.kb.names import slug_for, unique_name
from extractor.kb.sources import Source, with_key_facts
from extractor.kb.views import KBView, RevisionView, WorktreeView
from extractor.kb.yamlio import replace_frontmatter_keys

_SAFE_SEGMENT = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def domain_name(domain: str) -> str:
    """The domain as folders and settings spell it (a slug); a write error when nothing usable is left."""
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
    if draft.limitations:  # no "- None stated." placeholder: a claim without limitations has no such section
        sections.append(Section(heading="Limitations", body=bullet_list([safe_markdown(i) for i in draft.limitations])))
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
        found_by_claim = [claim.found_items() for claim in result.claims]
        found = sum(found_by_claim)
        by_claim = [f"{n} of {len(claim.anchors)}" for n, claim in zip(found_by_claim, result.claims, strict=True)]
        detail = f" (by claim, in order: {', '.join(by_claim)})" if len(by_claim) > 1 else ""
        parts.append(f"Evidence found in the source: {found} of {len(anchors)} items{detail}; the rest is paraphrase.")
    flagged = [
        f'"{claim.draft.title}" {flag.where}: {flag.reason}'
        for claim in result.claims
        for flag in claim.flags
        if flag.verdict == "unverified"
    ]
    if flagged:
        parts.append("Flagged for review: " + "; ".join(flagged) + ".")
    derived = sum(flag.verdict == "derived" for claim in result.claims for flag in claim.grounded)
    if derived:
        parts.append(f"Derived figures: {derived}, computed from the source's figures.")
    decisions = [d for d in result.entities.decisions if d.outcome != "dropped"]  # dropped ones are under Dropped
    if decisions:
        parts.append("Entities: " + "; ".join(f'{d.outcome} "{d.name}" ({d.reason})' for d in decisions) + ".")
    entity_flags = [
        f'"{name}" {flag.where}: {flag.reason}'
        for name, flags in result.entities.flags_by_name()
        for flag in flags
        if flag.verdict == "unverified"
    ]
    if entity_flags:
        parts.append("Entities flagged for review: " + "; ".join(entity_flags) + ".")
    if result.dropped:  # last: review reads the items after "Dropped: "
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
    domain = domain_name(result.domain)
    folder = PurePosixPath(folder_for(domain, settings, view.is_folder))
    texts: dict[str, str | None] = {}

    def current(path: str) -> str | None:
        return texts[path] if path in texts else view.read(path)

    kept: list[str] = []
    if replace_previous:
        # Only claims an extraction of this very source added: the source's own claims_extracted list
        # could name anyone's claims (hand-edited, or hostile), and --force must not delete those.
        for path in sorted(previous_drafts(source, index, settings.writable_claim_dirs)):
            added = view.message_that_added(path)
            info = parse_message(added, settings.agent_trailer_key) if added else None
            if info is not None and info.source == result.source_path:
                texts[path] = None
            else:
                kept.append(path)
        for title in as_list(source.metadata.get("enrichments_applied")):
            ref = index.resolve(title)
            if ref is not None and (text := current(ref.path)) is not None:
                texts[ref.path] = remove_enrichment_blocks(text, source.slug)
        texts.update(take_back(source.metadata, result.source_path, view, current, settings.agent_trailer_key).texts)

    freed = {
        PurePosixPath(p).name.casefold() for p, t in texts.items() if t is None and PurePosixPath(p).parent == folder
    }
    taken = TakenNames(view.folded_names(str(folder)), freed)
    topics = ["[[_map]]"] if view.read(str(folder / "_map.md")) is not None else []
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

    def names_in(folder: str) -> frozenset[str]:
        """A folder's names, less the files this plan deletes (a forced re-extraction writes them anew)."""
        gone = {PurePosixPath(p).name for p, t in texts.items() if t is None and str(PurePosixPath(p).parent) == folder}
        return view.names(folder) - gone

    entities = plan_entities(
        result.entities,
        entities_dir=settings.entities_dir,
        domain=domain,
        agent=result.agent,
        today=today,
        names_in=names_in,
        read=current,
    )
    texts.update(entities.texts)

    anything = claim_titles or enriched_titles or entities.created or entities.updated
    status = "processed" if anything else "null-result"
    updates: dict[str, object] = {
        "status": status,
        "processed_by": result.agent,
        "processed_date": today,
        "claims_extracted": claim_titles,
        "enrichments_applied": enriched_titles,
        "entities_created": entities.created,
        "entities_updated": entities.updated,
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
        message=redact_values(
            extraction_message(
                agent=result.agent,
                source_path=result.source_path,
                domain=result.domain,
                runner=runner,
                worker=worker,
                trailer_key=settings.agent_trailer_key,
                identity=settings.agent_identity_for(result.agent),
                model=result.model,
                prompt_hash=result.prompt_hash,
            ),
            secrets,
        ),
        claim_titles=claim_titles,
        claim_paths=claim_paths,
        enriched_titles=enriched_titles,
        entities_created=entities.created,
        entities_updated=entities.updated,
        status=status,
        notes=[f"kept {path}: no extraction of this source added it" for path in kept] + entities.notes,
    )


class TakenNames:
    """The case-folded names a new claim file must not take: the folder's (never copied: it may hold 100,000),
    less the files this plan deletes, plus the names it has given."""

    def __init__(self, existing: Collection[str], freed: set[str]) -> None:
        self.existing = existing
        self.freed = freed
        self.given: set[str] = set()

    def __contains__(self, name: object) -> bool:
        return name in self.given or (name not in self.freed and name in self.existing)

    def add(self, name: str) -> None:
        self.given.add(name)


def _check_inside(kb_root: Path, path: str, settings: Settings, source_path: str) -> None:
    """Writes go only to the claims and entity folders and the source itself, never through a symbolic link.

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
    folders = [*settings.writable_claim_dirs, settings.entities_dir]
    if not any(literal.is_relative_to(os.path.normpath(root / d)) for d in folders):
        raise WriteError(f"refusing to write outside the claims and entity folders: {path}")


def planning_view(kb_root: Path, settings: Settings) -> tuple[KBView, str | None]:
    """What to plan against, and the base commit: main's tip in branch mode, the work tree otherwise."""
    if settings.commit_mode == "main":
        return WorktreeView(kb_root), None
    base = rev_parse(kb_root, f"refs/heads/{settings.main_branch}")
    if base is None:
        raise WriteError(f"branch mode needs the main branch {settings.main_branch!r}, which does not exist")
    return RevisionView(kb_root, base), base


def report_for(
    result: ExtractionResult, changes: ChangeSet, commit: str, branch: str | None, worker: int
) -> ExtractionReport:
    claims = [
        ClaimReport(
            title=resolved.draft.title,
            path=path,
            gates=list(GATES),
            anchors=resolved.anchors,
            anchored_share=anchored_share(resolved.anchors),
            flags=[flag for flag in resolved.flags if flag.verdict == "unverified"],
            grounded=resolved.grounded,
        )
        for resolved, path in zip(result.claims, changes.claim_paths, strict=True)
    ]
    return ExtractionReport(
        source_path=result.source_path,
        commit=commit,
        branch=branch,
        worker=worker,
        agent=result.agent,
        model=result.model,
        prompt_hash=result.prompt_hash,
        parts=result.parts,
        claims=claims,
        enriched=changes.enriched_titles,
        entities_created=changes.entities_created,
        entities_updated=changes.entities_updated,
        entity_decisions=[f'{d.outcome} "{d.name}": {d.reason}' for d in result.entities.decisions],
        dropped=result.dropped,
        part_notes=result.part_notes,
        prompt_tokens=result.usage.prompt_tokens,
        completion_tokens=result.usage.completion_tokens,
        cost=result.usage.cost,
    )
