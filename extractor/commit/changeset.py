"""What an extraction writes: every file's full new text and the commit message, planned before anything is
written."""

from __future__ import annotations

from pydantic import BaseModel, Field

from extractor.core.errors import ExtractorError
from extractor.core.records import FileChange


class WriteError(ExtractorError):
    """The drafts cannot be written; nothing was changed."""


class ChangeSet(BaseModel):
    changes: list[FileChange]
    message: str
    claim_titles: list[str]
    claim_paths: list[str]
    enriched_titles: list[str]
    entities_created: list[str] = Field(default_factory=list)
    entities_updated: list[str] = Field(default_factory=list)
    status: str
    notes: list[str] = Field(default_factory=list)
