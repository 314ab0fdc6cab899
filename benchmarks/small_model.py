"""The embedded model on recorded corpus sources: the select strategy beside the draft strategy.

Run: .venv/bin/python benchmarks/small_model.py [--sources 20] [--max-chars 20000] [--strategies select,draft]
                                               [--out FILE] [--labels FILE]

Takes ``--sources`` recorded runs of the corpus spread over its domains and over source
lengths (the same ones every time), extracts each with the embedded model under each
strategy (nothing is written to a KB: the KB the run found is the index), and prints per
source and strategy: claims kept, dropped, seconds and tokens; then the share of sources
with at least one claim. ``--out`` writes every kept claim (title, description, evidence,
limitations, flags) and the claims people accepted, as JSON lines, for reading by hand;
the readings (``data/small_model_labels.jsonl``: acceptable, usable with edits, junk) are
counted per strategy. The embedded model samples greedily with a fixed seed, so the same
machine drafts the same claims and the readings stay attached to them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from extractor.core.settings import Settings  # noqa: E402
from extractor.evaluate.evaluation import run_index  # noqa: E402
from extractor.evaluate.runs import RecordedRun, load_runs  # noqa: E402
from extractor.extraction.extract import DROPPED_CLAIM  # noqa: E402
from extractor.extraction.strategy import extract_source  # noqa: E402
from extractor.kb.index import KBIndex  # noqa: E402
from extractor.llm.client import LLMError, StructuredClient, make_client  # noqa: E402
from extractor.llm.endpoint import llm_endpoint  # noqa: E402

LABELS = Path(__file__).resolve().parent / "data" / "small_model_labels.jsonl"
READINGS = ("acceptable", "usable with edits", "junk", "unread")
DEFAULT_CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "teleo-codex"


def spread(runs: list[RecordedRun], count: int) -> list[RecordedRun]:
    """``count`` runs taken in turn from each domain (as many from each as there are), each domain's runs
    ordered by source length and taken from evenly spaced places in that order: short, medium and long
    sources of every domain."""
    by_domain: dict[str, list[RecordedRun]] = defaultdict(list)
    for run in runs:
        by_domain[run.source.domain or "none"].append(run)
    queues = []
    for domain in sorted(by_domain, key=lambda d: (-len(by_domain[d]), d)):
        ordered = sorted(by_domain[domain], key=lambda r: (len(r.source.body), r.name))
        share = -(-count // len(by_domain))
        step = len(ordered) / share
        queues.append([ordered[int(i * step + step / 2)] for i in range(min(share, len(ordered)))])
    chosen: list[RecordedRun] = []
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    rest = sorted((run for run in runs if run not in chosen), key=lambda r: (len(r.source.body), r.name))
    while len(chosen) < count and rest:  # domains with few runs leave room: fill it across the lengths
        chosen.append(rest.pop(len(rest) // 2))
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--sources", type=int, default=20)
    parser.add_argument(
        "--max-chars",
        type=int,
        default=20_000,
        help="leave out longer sources (the draft strategy reads them in many slow parts)",
    )
    parser.add_argument("--strategies", default="select,draft")
    parser.add_argument("--out", type=Path, help="write the kept claims as JSON lines")
    parser.add_argument(
        "--labels",
        type=Path,
        default=LABELS,
        help="hand readings of kept claims (source, strategy, title, label) to count; missing ones are 'unread'",
    )
    args = parser.parse_args()
    if not (args.corpus / "extractions").is_dir():
        sys.exit(f"no corpus at {args.corpus} (it needs ../shared)")
    for name in ("OPENAI_BASE_URL", "EXTRACTOR_BASE_URL"):
        os.environ.pop(name, None)

    runs, _ = load_runs(args.corpus / "extractions")
    chosen = spread([run for run in runs if len(run.source.body) <= args.max_chars], args.sources)
    full = KBIndex.load(args.corpus / "kb")
    settings = Settings(claims_dir="domains", enrich_dirs=["core", "foundations"], cache=False)
    out = args.out.open("w", encoding="utf-8") if args.out else None
    rows: dict[str, list[tuple[int, float]]] = defaultdict(list)
    labels = read_labels(args.labels)
    read: dict[str, Counter[str]] = defaultdict(Counter)
    with llm_endpoint(settings) as embedded:
        print(f"model {embedded.model}, {os.cpu_count()} cores, {len(chosen)} sources")
        print(f"{'source':52} {'chars':>7} {'strategy':8} {'kept':>4} {'drop':>4} {'s':>6} {'in':>6} {'out':>5}")
        for run in chosen:
            index = run_index(full, run)
            for strategy in args.strategies.split(","):
                live = embedded.model_copy(update={"strategy": strategy})
                client = StructuredClient(make_client(live), live)
                started = time.monotonic()
                try:
                    result = extract_source(run.source, f"inbox/archive/{run.slug}.md", live, client, index)
                except LLMError as exc:
                    seconds = time.monotonic() - started
                    rows[strategy].append((0, seconds))
                    print(f"{run.slug[:52]:52} {len(run.source.body):7d} {strategy:8} failed: {exc.kind}")
                    if out:
                        out.write(json.dumps({"source": run.slug, "strategy": strategy, "error": str(exc)}) + "\n")
                    continue
                seconds = time.monotonic() - started
                dropped = sum(item.startswith(DROPPED_CLAIM) for item in result.dropped)
                rows[strategy].append((len(result.claims), seconds))
                for claim in result.claims:
                    read[strategy][labels.get((run.slug, strategy, claim.draft.title), "unread")] += 1
                print(
                    f"{run.slug[:52]:52} {len(run.source.body):7d} {strategy:8} {len(result.claims):4d} {dropped:4d} "
                    f"{seconds:6.1f} {result.usage.prompt_tokens:6d} {result.usage.completion_tokens:5d}",
                    flush=True,
                )
                if out:
                    record = {
                        "source": run.slug,
                        "domain": run.source.domain,
                        "chars": len(run.source.body),
                        "strategy": strategy,
                        "seconds": round(seconds, 1),
                        "claims": [
                            {
                                "title": claim.draft.title,
                                "description": claim.draft.description,
                                "evidence": claim.draft.evidence,
                                "limitations": claim.draft.limitations,
                                "confidence": claim.draft.confidence.value,
                                "flags": [f"{flag.gate}: {flag.reason}" for flag in claim.flags],
                            }
                            for claim in result.claims
                        ],
                        "dropped": result.dropped,
                        "accepted": [claim.title for claim in run.accepted],
                    }
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                    out.flush()
    for strategy, values in rows.items():
        with_claims = sum(kept > 0 for kept, _ in values)
        print(
            f"{strategy}: {with_claims} of {len(values)} sources with at least one claim, "
            f"{sum(kept for kept, _ in values)} claims; seconds per source median "
            f"{statistics.median(s for _, s in values):.1f}, max {max(s for _, s in values):.1f}"
        )
        print(f"  read by hand ({args.labels.name}): " + ", ".join(f"{read[strategy][r]} {r}" for r in READINGS))


def read_labels(path: Path) -> dict[tuple[str, str, str], str]:
    """(source, strategy, title) -> reading, from one JSON object a line; none when the file is absent."""
    if not path.is_file():
        return {}
    labels = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            if item["label"] not in READINGS:
                sys.exit(f"{path}: unknown reading {item['label']!r} (one of {', '.join(READINGS[:3])})")
            labels[(item["source"], item["strategy"], item["title"])] = item["label"]
    return labels


if __name__ == "__main__":
    main()
