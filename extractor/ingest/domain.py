"""The domain of a new source, chosen by the configured model among the KB's domains: a structured answer
whose domain can only be one of them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, create_model

from extractor.core.records import CallRecord
from extractor.extraction.prompts import fill_template
from extractor.ingest.document import Document
from extractor.llm.client import StructuredClient

TEMPLATE = "ingest_domain.md"
EXCERPT_CHARS = 4000


def choice_shape(domains: list[str]) -> type[BaseModel]:
    """``{domain, reason}`` with ``domain`` an enum of ``domains``: the schema the model answers in, and the
    check its answer passes."""
    return create_model(
        "DomainChoice",
        domain=(Literal[tuple(domains)], Field(description="one of the listed domains")),  # type: ignore[arg-type]
        reason=(str, Field(default="", description="why, in one sentence")),
    )


def domain_messages(prompts: Path, document: Document, domains: list[str]) -> list[dict[str, str]]:
    prompt = fill_template(
        prompts,
        TEMPLATE,
        {
            "domains": ", ".join(domains),
            "title": document.title or "untitled",
            "author": ", ".join(document.authors) or "unknown author",
            "date": document.date or "undated",
            "excerpt": document.text[:EXCERPT_CHARS],
        },
    )
    return [{"role": "user", "content": prompt}]


def choose_domain(
    llm: StructuredClient, prompts: Path, document: Document, domains: list[str]
) -> tuple[str, list[CallRecord]]:
    """The model's domain for ``document`` and the calls it took (an ``LLMError`` when it gave no valid one)."""
    reply = llm.ask(domain_messages(prompts, document, domains), choice_shape(domains))
    return str(reply.value.domain), reply.calls  # type: ignore[attr-defined]
