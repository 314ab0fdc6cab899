"""Per-source overhead excluding the LLM, at several KB sizes.

Run: .venv/bin/python benchmarks/overhead.py [--sizes 500 10000 100000] [--sources 5]

For each size, a git KB with that many synthetic claims (and one source per
measured extraction) is built once under a temporary folder. Each source then
goes through what a worker and the writer do, with the model's reply canned:
the worker's part (build the prompt with its candidates, run the gates, with
the KB index it keeps between tasks) and the writer's part (plan against main,
commit the extraction branch). Loading the index is timed apart: the first load,
and a reload with one claim file changed since (what a worker pays once per cycle
in branch mode, and after every commit in main mode; it re-reads only changed
files, then rebuilds the BM25 ranking). Printed: milliseconds, median.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from extractor.core.records import Usage  # noqa: E402
from extractor.core.settings import Settings  # noqa: E402
from extractor.extraction.answer import ExtractionAnswer  # noqa: E402
from extractor.extraction.extract import judge_answer, prepare_request  # noqa: E402
from extractor.kb.claims import ClaimDocument, Section, render_claim  # noqa: E402
from extractor.kb.index import KBIndex  # noqa: E402
from extractor.kb.sources import content_hash, parse_source  # noqa: E402
from extractor.llm.client import StructuredReply  # noqa: E402
from extractor.run.service import Drafted, SourceService  # noqa: E402
from extractor.store.state import StateStore
from tests.kbfactory import make_inbox_kb  # noqa: E402

PROMPT = Path(__file__).resolve().parent.parent / "prompts" / "system.md"
WORDS = [word for word in PROMPT.read_text(encoding="utf-8").split() if word.isalpha()]
DOMAIN = "ai-alignment"


def phrase(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS).lower() for _ in range(n))


def build_kb(root: Path, claims: int, sources: int, rng: random.Random) -> Path:
    kb = make_inbox_kb(root, sources, domain=DOMAIN, body=lambda number: f"{phrase(rng, 400)}.")
    folder = kb / "claims" / DOMAIN
    folder.mkdir(parents=True)
    for number in range(claims):
        title = f"Claim {number} shows that {phrase(rng, 8)}"
        document = ClaimDocument(
            metadata={
                "type": "claim",
                "domain": DOMAIN,
                "description": phrase(rng, 14),
                "confidence": "likely",
                "source": "synthetic",
                "created": "2026-01-01",
            },  # fmt: skip
            title=title,
            argument=phrase(rng, 40),
            sections=[Section(heading="Evidence", body=f"- {phrase(rng, 12)}")],
            relevant_notes=[],
            topics=[],
        )
        (folder / f"claim-{number}.md").write_text(render_claim(document), encoding="utf-8")
    for command in (["add", "-A"], ["commit", "-qm", "synthetic claims"]):
        subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@x", *command], cwd=kb, check=True)
    return kb


def canned(body: str) -> StructuredReply[ExtractionAnswer]:
    sentence = body.split(".")[0][:200]
    answer = ExtractionAnswer.model_validate({
        "key_facts": [], "enrichments": [], "null_result_reason": None, "notes": "",
        "claims": [{"evidence": [sentence], "argument": "The source says so.", "limitations": ["One source."],
                    "title": f"The source shows that {sentence[:80]}", "description": "A synthetic claim for timing.",
                    "confidence": "experimental", "secondary_domains": [], "related": []}],
    })  # fmt: skip
    return StructuredReply[ExtractionAnswer](value=answer, usage=Usage(), attempts=1, retries=0, reasks=0,
                                             raw_replies=["{}"])  # fmt: skip


def measure(kb: Path, sources: int) -> tuple[float, float, list[float], list[float], list[float]]:
    """The first index load (built), a load by a new process (read from disk); per source: a reload after a
    commit that changed one claim, the worker's part with the index kept, the writer's part."""
    settings = Settings(claims_dir="claims", base_url="http://127.0.0.1:9/v1", domains=[DOMAIN])
    reloads, worker, writer = [], [], []
    started = time.perf_counter()
    index = KBIndex.load(kb, exclude=[settings.inbox_dir], at=settings.main_branch)
    index.related("warm up", 1)
    first_load = time.perf_counter() - started
    started = time.perf_counter()
    KBIndex.load(kb, exclude=[settings.inbox_dir], at=settings.main_branch).related("warm up", 1)
    reopened = time.perf_counter() - started  # what a new process pays once the index is on disk
    claims = sorted((kb / "claims" / DOMAIN).glob("*.md"))
    service = SourceService(kb, settings, StateStore.open(kb), runner="benchmark")
    service.index = index
    for number, path in enumerate(sorted((kb / "inbox" / "archive").glob("*.md"))[:sources]):
        rel = path.relative_to(kb).as_posix()
        edited = claims[number % len(claims)]
        edited.write_text(edited.read_text(encoding="utf-8") + "\nEdited.\n", encoding="utf-8")
        git(kb, "commit", "-qam", f"edit {edited.name}")  # someone's commit on main, between two sources
        started = time.perf_counter()
        index = KBIndex.load(kb, exclude=[settings.inbox_dir], previous=index, at=settings.main_branch)
        index.related("warm up", 1)
        service.index = index
        reloads.append(time.perf_counter() - started)
        started = time.perf_counter()
        source = parse_source(path, path.read_text())
        request = prepare_request(source, rel, settings, index)
        result = judge_answer(source, request, canned(source.body), settings, index, llm=None)
        worker.append(time.perf_counter() - started)
        started = time.perf_counter()
        drafted = Drafted(source_path=rel, worker=1, content_hash=content_hash(source.text), extraction=result)
        outcome = service.conclude(drafted)  # plan under the write lock, commit, record in the store
        assert outcome.done, outcome.error
        writer.append(time.perf_counter() - started)
    return first_load, reopened, reloads, worker, writer


def git(kb: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=b", "-c", "user.email=b@x", *args], cwd=kb, check=True)


def cache_hit_ms(root: Path, repeat: int = 50) -> float:
    """Milliseconds for an answer served from the response cache (no HTTP), median of ``repeat``."""
    import json

    from extractor.llm.client import StructuredClient, cache_key, make_client, response_format
    from extractor.store.state import StateStore

    settings = Settings(base_url="http://127.0.0.1:9/v1", model="gpt-4o-mini")
    store = StateStore.open(root)
    messages = [{"role": "system", "content": phrase(random.Random(1), 1500)}, {"role": "user", "content": "x"}]
    answer = canned(phrase(random.Random(2), 50)).value
    key = cache_key(settings, messages, response_format(settings.structured_mode, ExtractionAnswer), ExtractionAnswer)
    store.cache_answer(key, settings.model, json.dumps(answer.model_dump()), 1000, 100, 0.0002)
    client = StructuredClient(make_client(settings), settings, cache=store)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        reply = client.ask(messages, ExtractionAnswer)
        times.append(time.perf_counter() - started)
        assert reply.calls[0].outcome == "cached"
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 10_000, 100_000])
    parser.add_argument("--sources", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(8)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"an answer from the response cache: {cache_hit_ms(Path(tmp)):.1f} ms, $0 (median of 50)")
    print("claims | first index build ms | index load by a new process ms | reload, 1 file changed "
          "| worker ms/source, index kept | writer ms/source | per source | per source with a reload "
          "| KB build s")  # fmt: skip
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            kb = build_kb(Path(tmp) / "kb", size, args.sources, rng)
            built = time.perf_counter() - started
            first, reopened, reloads, worker, writer = measure(kb, args.sources)
            r, w, c = (statistics.median(values) * 1000 for values in (reloads, worker, writer))
            print(f"{size:>6} | {first * 1000:>8.0f} | {reopened * 1000:>8.0f} | {r:>8.0f} | {w:>8.0f} | {c:>8.0f} "
                  f"| {w + c:>8.0f} "
                  f"| {r + w + c:>8.0f} | {built:.0f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
