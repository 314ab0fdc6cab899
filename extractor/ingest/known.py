"""The sources a KB already holds, by URL, DOI and text, so the same paper is not ingested twice.

Read from the main branch (where a committed source lands, whatever is checked out), from branches of
sources still awaiting review (``ingest/``), and from the work tree (sources written but not committed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from extractor.ingest.document import Document
from extractor.ingest.sourcefile import canonical_url, text_hash
from extractor.kb.gitrepo import local_branches, texts_at
from extractor.kb.yamlio import split_document

PENDING_PREFIX = "ingest/"


@dataclass
class KnownSources:
    by_url: dict[str, str] = field(default_factory=dict)
    by_doi: dict[str, str] = field(default_factory=dict)
    by_text: dict[str, str] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)  # file names, case-folded, as unique_name keeps them

    @classmethod
    def scan(cls, kb_root: Path, inbox_dir: str, main_branch: str) -> KnownSources:
        """Main's inbox first (its names win), then pending ``ingest/`` branches, then the work tree."""
        known = cls()
        revs = [f"refs/heads/{main_branch}"] + [
            f"refs/heads/{name}" for name in sorted(local_branches(kb_root)) if name.startswith(PENDING_PREFIX)
        ]
        for rev in revs:
            for name, text in texts_at(kb_root, rev, inbox_dir).items():
                known.take(f"{inbox_dir}/{name}", text)
        folder = kb_root / inbox_dir
        for path in sorted(folder.glob("*.md")) if folder.is_dir() else []:
            if path.name.casefold() not in known.names:
                try:
                    found: str | None = path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError):
                    found = None
                known.take(f"{inbox_dir}/{path.name}", found)
        return known

    def take(self, path: str, text: str | None) -> None:
        """One existing source; an unreadable one still takes its name."""
        self.names.add(path.rsplit("/", 1)[-1].casefold())
        if text is None:
            return
        try:
            metadata, body = split_document(text)
        except Exception:  # noqa: BLE001 - a damaged source is the pipeline's to report, not ingest's
            return
        url, doi = metadata.get("url"), metadata.get("doi")
        self._remember(str(url) if url else None, str(doi) if doi else None, body, path)

    def _remember(self, url: str | None, doi: str | None, body: str, path: str) -> None:
        if url:
            self.by_url.setdefault(canonical_url(url), path)
        if doi:
            self.by_doi.setdefault(doi.strip().lower(), path)
        if body.strip():
            self.by_text.setdefault(text_hash(body), path)

    def add(self, document: Document, path: str) -> None:
        self._remember(document.url, document.doi, document.text, path)

    def duplicate_of(self, document: Document) -> tuple[str, str] | None:
        """The source with the same URL, DOI or text as ``document``, and which of them matched."""
        if document.url and (path := self.by_url.get(canonical_url(document.url))):
            return path, "same URL"
        if document.doi and (path := self.by_doi.get(document.doi.strip().lower())):
            return path, "same DOI"
        if path := self.by_text.get(text_hash(document.text)):
            return path, "same text"
        return None
