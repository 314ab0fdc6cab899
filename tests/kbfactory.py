"""Knowledge bases made for tests and benchmarks: many small sources in a real git repository."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path


def make_inbox_kb(
    root: Path,
    sources: int,
    settings: str | None = None,
    domain: str = "ai-alignment",
    body: Callable[[int], str] | None = None,
) -> Path:
    """A git KB with ``sources`` unprocessed sources and an empty claims folder, committed."""
    inbox = root / "inbox" / "archive"
    inbox.mkdir(parents=True)
    for number in range(sources):
        (inbox / f"2026-01-{number:02d}-source-{number:02d}.md").write_text(
            f"---\ntype: source\ntitle: Source number {number}\nauthor: A\ndate: 2026-01-00\n"
            f"domain: {domain}\nstatus: unprocessed\n---\n\n"
            + (body(number) if body else f"Body of source {number} about alignment.")
            + "\n",
            encoding="utf-8",
        )
    (root / "claims").mkdir()
    if settings is not None:
        (root / "extractor.toml").write_text(settings, encoding="utf-8")
    identity = ["-c", "user.name=Test User", "-c", "user.email=test@example.com"]
    for command in (["init", "-q", "-b", "main"], ["add", "-A"], [*identity, "commit", "-qm", "initial"]):
        subprocess.run(["git", *command], cwd=root, check=True, capture_output=True)
    return root
