"""One source in, one :class:`ExtractionResult` out, by the strategy the settings choose."""

from __future__ import annotations

from extractor.core.settings import Settings
from extractor.extraction.extract import ExtractionResult, draft_source
from extractor.extraction.selecting import select_source
from extractor.kb.index import KBIndex
from extractor.kb.sources import Source
from extractor.llm.client import StructuredClient


def extract_source(
    source: Source,
    source_path: str,
    settings: Settings,
    llm: StructuredClient,
    index: KBIndex,
    replace_previous: bool = False,
) -> ExtractionResult:
    """Draft (the model writes each claim) or select (it chooses the source's sentences that state claims):
    ``strategy`` decides, and auto selects for the embedded model."""
    extract = select_source if settings.selects else draft_source
    return extract(source, source_path, settings, llm, index, replace_previous)
