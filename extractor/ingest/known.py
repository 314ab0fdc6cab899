"""The sources an inbox already holds, by URL, DOI and text, so the same paper is not ingested twice."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from extractor.ingest.document import Document
from extractor.ingest.sourcefile import canonical_url, text_hash
from extractor.kb.yamlio import split_document


@dataclass
class KnownSources:
    by_url: dict[str, str] = field(default_factory=dict)
    by_doi: dict[str, str] = field(default_factory=dict)
    by_text: dict[str, str] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)  # file names, case-folded, as unique_name keeps them

    @classmethod
    def scan(cls, inbox: Path, inbox_dir: str) -> KnownSources:
        """Every readable source under ``inbox``; unreadable ones still take their name."""
        known = cls()
        for path in sorted(inbox.glob("*.md")) if inbox.is_dir() else []:
            known.names.add(path.name.casefold())
            try:
                metadata, body = split_document(path.read_text(encoding="utf-8"))
            except Exception:  # noqa: BLE001, S112 - a damaged source is the pipeline's to report, not ingest's
                continue
            relative = f"{inbox_dir}/{path.name}"
            url, doi = metadata.get("url"), metadata.get("doi")
            known._remember(str(url) if url else None, str(doi) if doi else None, body, relative)
        return known

    def _remember(self, url: str | None, doi: str | None, body: str, path: str) -> None:
        if url:
            self.by_url.setdefault(canonical_url(url), path)
        if doi:
            self.by_doi.setdefault(doi.strip().lower(), path)
        if body.strip():
            self.by_text.setdefault(text_hash(body), path)

    def add(self, document: Document, path: str) -> None:
        self._remember(document.url, document.doi, document.text, path)

    def duplicate_of(self, document: Document) -> str | None:
        """The inbox source with the same URL, DOI or text as ``document``, and how it matched."""
        if document.url and (path := self.by_url.get(canonical_url(document.url))):
            return f"{path} (same URL)"
        if document.doi and (path := self.by_doi.get(document.doi.strip().lower())):
            return f"{path} (same DOI)"
        if path := self.by_text.get(text_hash(document.text)):
            return f"{path} (same text)"
        return None
