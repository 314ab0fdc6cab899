"""The command line's grammar: every command, its arguments and the global options.

Only argparse is imported here, so ``--help``, completion and the choice of a command cost nothing; each
command's module (and what it needs) is imported once the command is known.
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path
from typing import Any

from extractor import __version__

KB_HELP = "KB root: the top of its git work tree (default: the work tree holding the current folder)"
COST_GROUPS = ("day", "stage", "model", "endpoint", "agent", "source")

# command -> "module:function" under extractor.cli, imported when the command runs
HANDLERS = {
    "init": "commands.init:run_init",
    "extract": "commands.extract:run_extract",
    "run": "commands.running:run_run",
    "retry": "commands.retry:run_retry",
    "worker": "commands.worker:run_worker",
    "ingest": "commands.ingest:run_ingest",
    "status": "commands.status:run_status",
    "costs": "commands.costs:run_costs",
    "batch": "commands.batch:run_batch",
    "validate": "commands.validate:run_validate",
    "review": "commands.review:run_review",
    "provenance": "commands.provenance:run_provenance",
    "doctor": "commands.doctor:run_doctor",
    "demo": "commands.demo:run_demo",
    "eval": "commands.evaluate:run_eval",
    "completion": "commands.completion:run_completion",
}


def branch_slugs(prefix: str, parsed_args: argparse.Namespace, **kwargs: object) -> list[str]:
    """Shell completion of a slug: the KB's extraction branches (``extract/<slug>``), read when TAB is pressed."""
    import subprocess

    folder = getattr(parsed_args, "kb", None) or "."
    listing = subprocess.run(["git", "for-each-ref", "--format=%(refname:lstrip=3)", "refs/heads/extract/"],
                             cwd=folder, capture_output=True, text=True, check=False).stdout  # fmt: skip
    return [slug for slug in listing.split() if slug.startswith(prefix)]


def local_date(text: str) -> datetime.date:
    """A date as YYYY-MM-DD; anything else is argparse's usage error, with what was expected."""
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: write it YYYY-MM-DD") from None


def global_options(top: bool) -> argparse.ArgumentParser:
    """Options every command takes, before or after its name. Below the top they default to SUPPRESS, so a
    subcommand that does not repeat one leaves the value given before it in place."""
    options = argparse.ArgumentParser(add_help=False)
    value: Any = None if top else argparse.SUPPRESS  # --kb, --config
    flag: Any = False if top else argparse.SUPPRESS  # --json, -v, -q
    group = options.add_argument_group("global options")
    group.add_argument("--kb", type=Path, default=value, help=KB_HELP)
    group.add_argument("--config", type=Path, default=value, help="settings file (default: <KB>/extractor.toml)")
    group.add_argument("--json", action="store_true", default=flag, help="machine-readable output")
    loudness = group.add_mutually_exclusive_group()
    loudness.add_argument("-v", "--verbose", action="store_true", default=flag, help="log at debug level too")
    loudness.add_argument(
        "-q", "--quiet", action="store_true", default=flag, help="no progress bars or per-item lines: results only"
    )
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="extractor",
        description="Draft claims from sources into a git knowledge base.",
        parents=[global_options(top=True)],
        epilog="Exit codes: 0 done, 1 an operation failed, 2 a usage or configuration error, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"extractor {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = [global_options(top=False)]

    def command(parent: argparse._SubParsersAction, name: str, help: str, **kwargs: object) -> argparse.ArgumentParser:  # noqa: A002
        return parent.add_parser(name, help=help, description=help, parents=common, **kwargs)  # type: ignore[arg-type]

    init = command(commands, "init", "write a commented extractor.toml from what the KB holds")
    init.add_argument("--yes", "-y", action="store_true", help="ask nothing: write what was found")
    init.add_argument("--force", action="store_true", help="replace an existing settings file")
    init.add_argument("--dry-run", action="store_true", help="print the settings that would be written; write nothing")

    extract = command(commands, "extract", "extract claims from one source by hand")
    extract.add_argument("path", type=Path, help="the source file, inside a KB's git work tree")
    extract.add_argument("--force", action="store_true", help="re-extract a processed source, replacing its drafts")
    extract.add_argument("--dry-run", action="store_true", help="print the drafts; write nothing")
    extract.add_argument("--worker", type=int, default=1, help="worker number for provenance (default 1)")
    extract.add_argument("--no-cache", action="store_true", help="ask the model even if the answer is cached")

    run = command(commands, "run", "poll the inbox and extract due sources (daemon), or one cycle")
    run.add_argument("sources", nargs="*", metavar="SOURCE",
                     help="with --once: only due sources matching these paths or globs, from the current folder "
                          "like any path (quote a glob: 'inbox/archive/2025-*')")  # fmt: skip
    run.add_argument("--once", action="store_true", help="one cycle, then exit (for cron)")
    run.add_argument("--workers", type=int, help="worker processes (default: the workers setting)")
    run.add_argument("--force", action="store_true", help="also retry sources parked after repeated failures")
    run.add_argument("--no-cache", action="store_true", help="ask the model even where an answer is cached")

    worker = command(commands, "worker", "compute drafts for the KB's run from this host's clone, through the "
                     "queue in the Postgres state database (compute = queue)")  # fmt: skip
    worker.add_argument("--state", metavar="URL", help="the state database, postgresql://... (default: state_url)")
    worker.add_argument(
        "--number", type=int, help="this worker's number in provenance (default: one from its host and process id)"
    )
    worker.add_argument("--concurrency", type=int, default=1, help="sources computed at once (default 1)")
    worker.add_argument("--once", action="store_true", help="stop when the queue is empty")
    retry = command(commands, "retry", "make failed or parked sources due now, without waiting for their retry time")
    retry.add_argument("sources", nargs="*", metavar="SOURCE",
                       help="paths or globs of sources to retry, from the current folder")  # fmt: skip
    retry.add_argument("--failed", action="store_true", help="every failed source waiting for its retry time")
    retry.add_argument("--parked", action="store_true", help="every source parked after repeated failures")

    ingest = command(commands, "ingest", "turn PDFs, web pages, feeds and text files into inbox sources, committed")
    ingest.add_argument("items", nargs="+", metavar="ITEM",
                        help="a file (PDF, HTML, markdown, text, RSS/Atom), an http(s) URL, a feed")  # fmt: skip
    ingest.add_argument("--domain", help="the sources' domain (default: chosen by the configured model)")
    ingest.add_argument("--format", help="the sources' format: paper, article, report, thread... (default: guessed)")
    ingest.add_argument("--tags", action="append", default=[], metavar="TAG,...",
                        help="tags for every source, comma-separated (repeatable)")  # fmt: skip
    where = ingest.add_mutually_exclusive_group()
    where.add_argument("--commit", dest="commit_to", action="store_const", const="main",
                       help="commit them on the main branch (the default, see ingest_commit)")  # fmt: skip
    where.add_argument("--branch", dest="commit_to", action="store_const", const="branch",
                       help="commit them on a branch ingest/<slug>, for review")  # fmt: skip
    where.add_argument("--no-commit", dest="commit_to", action="store_const", const="none",
                       help="write the files only")  # fmt: skip
    command(commands, "status", "what the state store knows: counts, failures and their retry times, tokens")

    costs = command(commands, "costs", "tokens and cost of the LLM calls, by day, stage, model, agent and source")
    costs.add_argument("--by", choices=COST_GROUPS, help="one grouping, every row (default: all, top sources)")
    costs.add_argument("--since", type=local_date, help="from this local date (YYYY-MM-DD)")

    batch = command(commands, "batch", "extract a backlog through the provider's Batch API, at its price")
    batch_commands = batch.add_subparsers(dest="batch_command", required=True, metavar="ACTION")
    submit = command(batch_commands, "submit", "send due sources as one batch job")
    submit.add_argument("--limit", type=int, default=1000, help="at most this many sources (default 1000)")
    command(batch_commands, "status", "the batches not yet collected, as the provider sees them")
    command(batch_commands, "collect", "write the results of finished batches; failed items are due again")

    validate = command(commands, "validate", "check stored claim and source files against the gates")
    validate.add_argument("paths", type=Path, nargs="*", help="files or folders (default: the whole KB)")
    validate.add_argument("--fix-links", action="store_true", help="unlink wiki links that resolve to no note")

    review = command(commands, "review", "extraction branches awaiting review")
    actions = review.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = command(actions, "list", "pending extraction branches")
    chosen = listing.add_mutually_exclusive_group()
    chosen.add_argument("--approved", action="store_true", help="only branches every reviewer approved")
    chosen.add_argument("--changes", action="store_true", help="only branches a reviewer asked to change or rejected")
    drafted = listing.add_mutually_exclusive_group()
    drafted.add_argument(
        "--with-claims", action="store_true", help="only branches that draft a claim, an enrichment or an entity note"
    )
    drafted.add_argument("--null", action="store_true", help="only null results: branches that draft nothing")
    showing = command(actions, "show", "the drafts of one branch")
    showing.add_argument("slug").completer = branch_slugs  # type: ignore[attr-defined]
    showing.add_argument("--html", action="store_true",
                         help="a self-contained HTML page: the source with each evidence span highlighted, "
                              "the claims with their gates, enrichments as diffs, provenance")  # fmt: skip
    showing.add_argument("--output", type=Path, metavar="FILE", help="write to FILE (default: stdout)")
    serving = command(actions, "serve", "serve the review pages on 127.0.0.1 until Ctrl-C")
    serving.add_argument("slug", nargs="?", help="also print the address of this branch's page").completer = (  # type: ignore[attr-defined]
        branch_slugs
    )
    serving.add_argument("--port", type=int, default=0, help="port (default 0: a free one; the address is printed)")
    accepting = command(actions, "accept", "merge branches into the main branch")
    accepting.add_argument("slugs", nargs="*", metavar="slug").completer = branch_slugs  # type: ignore[attr-defined]
    accepting.add_argument(
        "--null", action="store_true", help="every pending null result (a branch that only marks its source)"
    )
    rejecting = command(actions, "reject", "delete a branch and record why on the source")
    rejecting.add_argument("slug").completer = branch_slugs  # type: ignore[attr-defined]
    why = rejecting.add_mutually_exclusive_group(required=True)
    why.add_argument("--reason", help="why the drafts are rejected (recorded on the source)")
    why.add_argument("--retry", action="store_true", help="instead make the source due again")

    provenance = command(commands, "provenance", "who and what made a claim file")
    provenance.add_argument("path", type=Path)

    doctor = command(commands, "doctor", "check the state database; rebuild a damaged one from git")
    doctor.add_argument("--rebuild", action="store_true", help="rebuild it from git even if it is healthy")

    demo = command(commands, "demo", "build a demo KB from the samples and run one cycle on it")
    demo.add_argument("--dir", type=Path, default=Path("build/demo-kb"), help="where (default build/demo-kb)")

    evaluate = command(
        commands, "eval", "measure drafts against recorded runs people reviewed (RUNS/<run>/before.md and added/)"
    )
    evaluate.add_argument("runs", type=Path, metavar="RUNS", help="folder of recorded runs (--kb: the KB they were "
                          "made in, default RUNS/../kb if it exists)")  # fmt: skip
    evaluate.add_argument(
        "--replay", action="store_true", help="feed the accepted claims and entity notes as the answer: the gates alone"
    )
    evaluate.add_argument("--html", type=Path, metavar="FILE", help="also write a self-contained report with charts")
    evaluate.add_argument("--against", type=Path, metavar="B.toml",
                          help="a second settings file, evaluated on the same runs and shown beside the first "
                               "(--config A.toml is the first)")  # fmt: skip
    evaluate.add_argument("--labels", type=Path, metavar="FILE",
                          help="gate decisions judged by hand (JSON lines): error rates per gate")  # fmt: skip
    evaluate.add_argument("--judge", action="store_true",
                          help="ask the model whether a borderline draft matches an accepted claim")  # fmt: skip
    evaluate.add_argument("--limit", type=int, metavar="N", help="the first N runs only (-q: totals only)")

    completion = command(commands, "completion", "print the shell completion script: eval it in your shell's rc file")
    completion.add_argument("shell", choices=("bash", "zsh", "fish"))
    return parser
