"""The drop folder: files people put in ``inbox/queue/`` are ingested at the start of each run cycle, the
originals moved to ``done/`` or, with a reason file, to ``failed/``."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from extractor.core.errors import ConfigurationError
from extractor.core.settings import Settings
from extractor.ingest.service import Ingester, IngestOptions, IngestReport
from extractor.llm.client import StructuredClient
from extractor.llm.connect import structured_client
from extractor.store.state import StateStore

log = logging.getLogger(__name__)

DONE, FAILED = "done", "failed"
REASON_SUFFIX = ".reason.txt"


SETTLE_SECONDS = 10.0  # a file changed more recently may still be being written or copied
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".crdownload", ".download")


def queued_files(queue: Path, now: float | None = None) -> list[Path]:
    """The files waiting in the drop folder that have stopped changing: not its done/ and failed/ folders, not
    hidden files or downloads in progress, none modified in the last :data:`SETTLE_SECONDS`."""
    if not queue.is_dir():
        return []
    settled_before = (now if now is not None else time.time()) - SETTLE_SECONDS
    found = []
    for path in queue.iterdir():
        try:
            if not path.is_file() or path.name.startswith(".") or path.name.endswith(PARTIAL_SUFFIXES):
                continue
            if path.stat().st_mtime <= settled_before:
                found.append(path)
        except OSError:
            continue  # gone meanwhile
    return sorted(found)


def _free_name(folder: Path, name: str) -> Path:
    target, number = folder / name, 2
    while target.exists() or target.is_symlink():
        stem, dot, suffix = name.partition(".")
        target, number = folder / f"{stem}-{number}{dot}{suffix}", number + 1
    return target


def file_away(path: Path, folder: str, reason: str | None = None) -> Path:
    """Move a queued file into ``done/`` or ``failed/`` (beside a one-line reason file); never over another."""
    target = _free_name(path.parent / folder, path.name)
    target.parent.mkdir(exist_ok=True)
    os.replace(path, target)
    if reason is not None:
        target.with_name(target.name + REASON_SUFFIX).write_text(reason + "\n", encoding="utf-8")
    return target


def domain_chooser(kb_root: Path, settings: Settings, store: StateStore) -> StructuredClient | None:
    """The configured endpoint chooses domains; the embedded model is too small to, so none is asked."""
    if not settings.has_endpoint or settings.is_embedded:
        return None
    return structured_client(kb_root, settings, cache=store)


def ingest_queue(kb_root: Path, settings: Settings, store: StateStore) -> IngestReport | None:
    """Ingest what waits in the drop folder; None when nothing does. A file whose sources could not be
    committed (main moved, a full disk) stays queued for the next cycle."""
    files = queued_files(kb_root / settings.ingest_queue_dir)
    if not files:
        return None
    ingester = Ingester(kb_root, settings, store, llm=domain_chooser(kb_root, settings, store))
    try:
        report = ingester.ingest([str(path) for path in files], IngestOptions())
    except ConfigurationError as exc:  # no main branch to commit onto: the cycle goes on, the files wait
        log.warning(f"{settings.ingest_queue_dir}: nothing ingested, left queued: {exc}")
        return None
    finally:
        ingester.close()
    if report.note is not None:
        log.warning(f"{settings.ingest_queue_dir}: nothing committed, left queued: {report.note}")
        return report
    for outcome in report.outcomes:
        if outcome.path is not None:
            log.info("ingested", extra={"item": outcome.item, "source": outcome.path})
        elif outcome.error is not None:
            log.warning(outcome.error, extra={"item": outcome.item})
    for path in files:  # a feed's entries share its item: one failed entry sends the feed to failed/, to retry
        errors = [o.error for o in report.outcomes if o.item == str(path) and o.error is not None]
        file_away(path, FAILED if errors else DONE, errors[0] if errors else None)
    return report
