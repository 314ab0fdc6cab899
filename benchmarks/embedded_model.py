"""How long the embedded model takes per sample source, and its tokens in and out.

Run: .venv/bin/python benchmarks/embedded_model.py [--repeat N]
Each sample is extracted for real (in a throwaway demo KB) through one server;
server start-up is reported on its own line.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from extractor.cli.demo import create_demo_kb  # noqa: E402
from extractor.core.settings import load_settings  # noqa: E402
from extractor.llm.client import StructuredClient, make_client  # noqa: E402
from extractor.llm.endpoint import llm_endpoint  # noqa: E402
from extractor.run.service import MANUAL_RUNNER, SourceService  # noqa: E402
from extractor.store.state import StateStore  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=1, help="extractions per sample (default 1)")
    args = parser.parse_args()
    for name in ("OPENAI_BASE_URL", "EXTRACTOR_BASE_URL"):
        os.environ.pop(name, None)

    with tempfile.TemporaryDirectory() as tmp:
        kb = create_demo_kb(Path(tmp) / "kb")
        settings = load_settings(kb)
        started = time.monotonic()
        with llm_endpoint(settings) as live:
            print(f"model: {live.model}; server ready in {time.monotonic() - started:.1f}s; {os.cpu_count()} cores")
            client = StructuredClient(make_client(live), live)
            service = SourceService(kb, live, StateStore.open(kb), runner=MANUAL_RUNNER, count_failures=False)
            rows = []
            print(f"{'source':58} {'s':>6} {'in':>6} {'out':>6} {'reqs':>4} {'claims':>6} outcome")
            for path in sorted((kb / "inbox" / "archive").glob("*.md")):
                for _ in range(args.repeat):
                    outcome = service.process(path, client, worker=1, force=True, dry_run=True)
                    usage = outcome.usage
                    rows.append((outcome.seconds, usage.prompt_tokens, usage.completion_tokens, len(outcome.claims)))
                    detail = outcome.kind.value if outcome.ok else f"failed: {outcome.error}"[:60]
                    print(
                        f"{path.name[:58]:58} {outcome.seconds:6.1f} {usage.prompt_tokens:6d} "
                        f"{usage.completion_tokens:6d} {usage.requests:4d} {len(outcome.claims):6d} {detail}"
                    )
        seconds = [r[0] for r in rows]
        print(
            f"per source: median {statistics.median(seconds):.1f}s, max {max(seconds):.1f}s; "
            f"tokens in median {statistics.median(r[1] for r in rows):.0f}, "
            f"out median {statistics.median(r[2] for r in rows):.0f}; "
            f"{sum(r[3] > 0 for r in rows)} of {len(rows)} extractions with at least one claim"
        )


if __name__ == "__main__":
    main()
