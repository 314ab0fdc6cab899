"""The lines a person reads about sources and cycles (JSON readers get the records themselves)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from extractor.core.redact import scrub

if TYPE_CHECKING:
    from extractor.core.records import SourceOutcome
    from extractor.run.scheduler import CycleReport


def describe(outcome: SourceOutcome, worker: bool = False) -> str:
    """One line per source; a run names the worker, ``extract`` the branch and what the writer decided."""
    by = f" (worker {outcome.worker})" if worker else ""
    if not outcome.ok:
        return scrub(f"{outcome.source_path}: {outcome.kind.value}{by}: {outcome.error}")
    commit = (outcome.commit or "(dry run)")[:12]
    where = f" on {outcome.branch}" if outcome.branch and not worker else ""
    entities = (
        f", {len(outcome.entities_created)} entity note(s) new, {len(outcome.entities_updated)} updated"
        if outcome.entities_created or outcome.entities_updated
        else ""
    )
    reviewed = f"; review: {outcome.review_verdict}" if outcome.review_verdict else ""
    if outcome.accepted is not None:
        reviewed += f", accepted into the main branch ({outcome.accepted[:12]})"
    notes = [*outcome.notes, *(f"review: {note}" for note in outcome.review_notes)]
    return (
        f"{commit}{where} {outcome.source_path}: {outcome.kind.value}, "
        f"{len(outcome.claims)} claim(s), {len(outcome.enrichments)} enrichment(s){entities}{by}; "
        f"{outcome.usage.prompt_tokens}+{outcome.usage.completion_tokens} tokens, {outcome.seconds:.1f}s{reviewed}"
    ) + ("" if worker else "".join(f"\n  {note}" for note in notes))


def dry_run_text(outcome: SourceOutcome) -> str:
    """What ``extract --dry-run`` would write, file by file."""
    parts = [outcome.message or ""]
    for change in outcome.changes:
        parts.append(f"==> {change.path} ({'delete' if change.text is None else 'write'})")
        if change.text is not None:
            parts.append(change.text)
    return "\n".join(parts)


def summary(report: CycleReport) -> str:
    failed = len(report.failed)
    text = f"cycle: {report.taken} source(s), {len(report.outcomes) - failed} done, {failed} failed"
    if report.ingested or report.ingest_failed:
        text += f"; {len(report.ingested)} ingested from the drop folder"
        text += f" ({len(report.ingest_failed)} item(s) failed: see its failed/ folder)" if report.ingest_failed else ""
    if report.scan.changed_after_processing:
        text += f"; {len(report.scan.changed_after_processing)} changed after processing (not re-extracted)"
    if report.scan.invalid:
        text += f"; {len(report.scan.invalid)} unreadable source file(s)"
    if report.budget:
        text += f"; stopped taking sources: {report.budget}"
    return text


def age(seconds: float) -> str:
    """A duration as people say it: 45s, 12m, 3h, 2d."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"
