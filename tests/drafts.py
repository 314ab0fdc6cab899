"""Answers a scripted endpoint gives: built from the request's own source text, so the gates accept them."""

from __future__ import annotations

import re
from typing import Any

NULL = {"key_facts": [], "claims": [], "enrichments": [], "null_result_reason": "Nothing new.", "notes": ""}
SENTENCE = re.compile(r"[A-Z][^.!?\n]{60,240}[.!?]")
VERB = re.compile(r"\b(is|are|was|were|has|have|shows|found|can|will)\b")


def first_user_message(request: dict[str, Any]) -> str:
    return next(m["content"] for m in request["messages"] if m["role"] == "user")


def source_body(request: dict[str, Any]) -> str:
    """The source text the request holds (one part's, for a long source: its header left out)."""
    found = re.search(r"<source>\n(.*)\n</source>", first_user_message(request), re.S)
    return PART_HEADER.sub("", found.group(1)) if found else ""


PART_HEADER = re.compile(r"\A\[Part \d+ of \d+ of this source:[^\]]*\]\n\n")


def part_of(request: dict[str, Any]) -> tuple[int, int] | None:
    """Which part of a long source the request holds: (number, of how many); None for a whole source."""
    found = re.search(r"\[Part (\d+) of (\d+) of this source:", first_user_message(request))
    return (int(found.group(1)), int(found.group(2))) if found else None


def source_file(request: dict[str, Any]) -> str:
    found = re.search(r"^Source file: (.+)$", first_user_message(request), re.M)
    return found.group(1).strip() if found else "?"


def grounded_answer(body: str) -> dict[str, Any]:
    """A claim made only of the source's own sentences, so the gates accept it unless it duplicates the KB."""
    sentences = [s for s in SENTENCE.findall(body) if VERB.search(s) and '"' not in s]
    if len(sentences) < 2:
        return NULL
    title, description = sentences[0].rstrip(".!?"), sentences[1]
    claim = {
        "evidence": [sentences[0]],
        "argument": "The source states this directly.",
        "limitations": ["One source."],
        "title": title,
        "description": description,
        "confidence": "experimental",
        "secondary_domains": [],
        "related": [],
    }
    return {**NULL, "claims": [claim], "null_result_reason": None, "key_facts": [sentences[1]]}
