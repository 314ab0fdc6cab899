"""The demo: a fresh knowledge base built from the project's samples, one cycle on it."""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath

from pydantic import BaseModel

from extractor.core.errors import ExtractorError
from extractor.core.records import ExtractionReport, SourceOutcome
from extractor.extraction.extract import DROPPED_CLAIM
from extractor.kb.gitrepo import Identity, commit_paths, git

PACKAGED = Path(__file__).parent.parent / "samples"
CHECKOUT = Path(__file__).parent.parent.parent
MARKER = ".extractor-demo"


class DemoError(ExtractorError):
    """The demo folder cannot be (re)created."""


def samples_root() -> Path:
    return PACKAGED if (PACKAGED / "inbox").is_dir() else CHECKOUT


def create_demo_kb(target: Path, samples: Path | None = None) -> Path:
    """Copy the sample inbox and claims into a new git repository at ``target``.

    A folder left by an earlier demo (it has the marker file) is replaced; any
    other existing folder is refused, so the demo never touches a real KB.
    """
    samples = samples or samples_root()
    if target.exists():
        if not (target / MARKER).is_file():
            raise DemoError(f"{target} exists and is not a demo knowledge base; choose another --dir")
        shutil.rmtree(target)
    (target / "inbox").mkdir(parents=True)
    shutil.copytree(samples / "inbox" / "archive", target / "inbox" / "archive")
    shutil.copytree(samples / "claims", target / "claims")
    (target / MARKER).write_text("created by `extractor demo`; safe to delete\n", encoding="utf-8")
    git(target, "init", "-q", "-b", "main")
    paths = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file() and ".git" not in p.parts)
    commit_paths(
        target,
        paths,
        "Demo knowledge base from the extractor samples\n",
        Identity(name="extractor demo", email="demo@localhost"),
    )
    return target


def report(kb: Path, since: str) -> str:
    """What the cycle made, on any branch: its commits with their trailers, and the claim files."""
    log = git(kb, "log", "--reverse", "--branches", "--not", since, "--format=%h %D%n%s%n%(trailers:only,unfold)",
              "--name-status")  # fmt: skip
    lines = ["Commits:", log.strip() or "(none)", ""]
    commits = git(kb, "log", "--reverse", "--branches", "--not", since, "--format=%H").split()
    for commit in commits:
        added = git(kb, "diff-tree", "--no-commit-id", "--name-only", "--diff-filter=A", "-r", commit, "--", "claims")
        for path in added.split():
            lines += [f"==> {path} ({commit[:7]})", git(kb, "show", f"{commit}:{path}"), ""]
    return "\n".join(lines)


class SampleSummary(BaseModel):
    source: str
    written: int
    dropped: list[str]
    error: str | None = None


def sample_summary(outcome: SourceOutcome, extraction: ExtractionReport | None) -> SampleSummary:
    dropped = [item for item in (extraction.dropped if extraction else []) if item.startswith(DROPPED_CLAIM)]
    return SampleSummary(
        source=PurePosixPath(outcome.source_path).stem,
        written=len(outcome.claims),
        dropped=dropped,
        error=None if outcome.ok else outcome.error,
    )


def closing_summary(samples: list[SampleSummary], kb: Path, command: str, model: str, strategy: str) -> str:
    """The demo's last words: per sample, claims written and dropped (the first reason), then where the KB is
    and how to look at its drafts, and how to use a real endpoint instead."""
    lines = [f"Summary ({model}, strategy {strategy}):"]
    for sample in samples:
        if sample.error:
            lines.append(f"  {sample.source}: failed: {sample.error}")
            continue
        line = f"  {sample.source}: {sample.written} claim(s) written, {len(sample.dropped)} dropped"
        if sample.dropped:
            first = sample.dropped[0]
            line += f" (first: {first if len(first) <= 160 else first[:159] + '…'})"
        lines.append(line)
    lines += [
        "",
        f"The demo knowledge base is {kb}; each source's drafts are on a branch extract/<source>. To look at them:",
        f"  {command} review --kb {kb} list",
        f"  {command} review --kb {kb} show <source>",
        f"  {command} review --kb {kb} show <source> --html --output review.html",
        f"  {command} review --kb {kb} serve    # the pages in a browser, to accept or reject from (j/k, a, r)",
        "To draft with a real model instead of the embedded one, name an OpenAI-compatible endpoint:",
        f"  OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... {command} demo",
    ]
    return "\n".join(lines)
