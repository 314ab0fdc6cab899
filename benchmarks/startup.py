"""Start-up figures: the CPU each command takes on a KB like a real one, beside ``python -c pass``.

Run: .venv/bin/python benchmarks/startup.py [--runs 5] [--json] [--kb-dir DIR] [--module]

Builds (in a temporary folder, or DIR with ``--kb-dir``; an existing one there is reused) a git KB from the
corpus at ../shared/corpus/teleo-codex: its claim, entity and schema folders at the root, its sources in
inbox/archive, ``claims_dir = "domains"``, ``enrich_dirs = ["core", "foundations"]``. Its state store has a
row for every source (done, failed with a retry time ahead, parked), a few thousand logged LLM calls, and
pending extraction branches made by ``extract`` against the scripted endpoint of tests/fakeopenai.py.

Each command runs as a child of this process through the installed entry point (``extractor`` beside the
Python running this; ``--module``: ``python -m extractor``, which follows PYTHONPATH), from the KB's folder.
CPU is the child's user + system time (``getrusage(RUSAGE_CHILDREN)`` before and after: git processes the
command waits for count too); the table shows the median of ``--runs`` runs. Heavy modules are read from one
extra run under ``python -X importtime``. ``OPENAI_BASE_URL`` points at a loopback port that accepts and drops
every connection, so a command that reaches for the endpoint is seen (column ``connects``) and never served.

Exit status: 0 when every command ran as expected (a missed target is a figure, not an error); 1 when one
exited with an unexpected code or the KB could not be built; 0 with a message when the corpus is absent.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
# Appended, not prepended: with PYTHONPATH set to another checkout, that checkout's extractor is the one used.
sys.path.append(str(ROOT))

if TYPE_CHECKING:
    from extractor.core.records import CallRecord

CORPUS = ROOT.parent / "shared" / "corpus" / "teleo-codex"
KB_FOLDERS = ("domains", "core", "foundations", "entities", "schemas")
SETTINGS = 'claims_dir = "domains"\nenrich_dirs = ["core", "foundations"]\n'
HEAVY = ("openai", "tantivy", "pygit2", "jinja2", "apscheduler", "tqdm", "numpy")
TARGET_CPU = 0.3
BUILT = ".extractor/startup-benchmark"  # marks a KB this script finished building
IDENTITY = ["-c", "user.name=Benchmark", "-c", "user.email=benchmark@example.com"]


@dataclass
class Figure:
    command: str
    cpu: float
    wall: float
    target: float | None
    heavy: list[str]
    exit_code: int
    connects: int
    runs: list[float] = field(default_factory=list)

    @property
    def missed(self) -> bool:
        return self.target is not None and self.cpu > self.target


def git(kb: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=kb, check=True, capture_output=True, text=True).stdout


def copy_corpus(corpus: Path, kb: Path) -> None:
    """The corpus laid out as a KB at ``kb``, committed on ``main``."""
    kb.mkdir(parents=True)
    for folder in KB_FOLDERS:
        if (corpus / "kb" / folder).is_dir():
            shutil.copytree(corpus / "kb" / folder, kb / folder)
    shutil.copytree(corpus / "inbox" / "archive", kb / "inbox" / "archive")
    (kb / "extractor.toml").write_text(SETTINGS, encoding="utf-8")
    git(kb, "init", "-q", "-b", "main")
    git(kb, "add", "-A")
    git(kb, *IDENTITY, "commit", "-qm", "the knowledge base")


def make_branches(kb: Path, count: int, accepted: int = 2) -> str:
    """``count`` pending extraction branches made by ``extract`` against the scripted endpoint (the answers hold
    the source's own sentences when it has them: a claim; else nothing: a null result), after ``accepted`` more
    that drafted claims were merged by ``review accept``. Returns a claim one of those put on main."""
    from extractor.cli.main import main
    from tests.drafts import grounded_answer, source_body
    from tests.fakeopenai import FakeOpenAI, Reply, answer

    sources = sorted(p for p in (kb / "inbox" / "archive").glob("*.md") if "status: unprocessed" in p.read_text())
    server = FakeOpenAI().start()
    server.responder = lambda request: Reply(body=answer(grounded_answer(source_body(request))).body)
    saved = {name: os.environ.get(name) for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY")}
    os.environ["OPENAI_BASE_URL"], os.environ["OPENAI_API_KEY"] = server.base_url, "sk-benchmark"

    def cli(*argv: str) -> None:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
            code: int | str | None
            try:
                code = main(list(argv))
            except SystemExit as exc:  # argparse refusing the arguments
                code = exc.code
        if code != 0:
            raise RuntimeError(f"extractor {' '.join(argv)}: exit {code}: {err.getvalue().strip()[-300:]}")

    try:
        made: list[str] = []  # extraction branches that drafted claims, to accept
        for path in sources[:: max(1, len(sources) // (count + accepted))]:
            if len(made) == accepted and len(branch_names(kb)) >= count + accepted:
                break
            cli("extract", str(path))
            branch = f"extract/{path.stem}"
            if len(made) < accepted and claims_on(kb, branch):
                made.append(branch)
        claim = claims_on(kb, made[0])[0] if made else None
        for branch in made:
            cli("review", "--kb", str(kb), "accept", branch.removeprefix("extract/"))
    finally:
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    if claim is None:
        raise RuntimeError("no extraction drafted a claim to accept")
    return claim


def branch_names(kb: Path) -> list[str]:
    return git(kb, "for-each-ref", "--format=%(refname:lstrip=2)", "refs/heads/extract/").split()


def claims_on(kb: Path, branch: str) -> list[str]:
    """Claim files ``branch`` adds to the claim folders."""
    return git(kb, "diff", "--name-only", "--diff-filter=A", "main", branch, "--", *KB_FOLDERS[:3]).splitlines()


def price(prompt_tokens: int, completion_tokens: int) -> float:
    return prompt_tokens * 1.5e-7 + completion_tokens * 6e-7


def logged_call(rng: random.Random, at: float, reply: str) -> CallRecord:
    """One LLM call as the log holds it: mostly answered, some cached, failed or invalid."""
    from extractor.core.records import CallRecord

    outcome = rng.choices(["ok", "cached", "error", "invalid"], [80, 10, 7, 3])[0]
    prompt, completion = (rng.randint(4_000, 30_000), rng.randint(300, 2_500)) if outcome != "error" else (0, 0)
    return CallRecord(
        at=at,
        model=rng.choice(["gpt-4o-mini", "gpt-4.1-mini"]),
        request_hash=f"{rng.getrandbits(64):016x}",
        prompt_tokens=prompt,
        completion_tokens=completion,
        latency=rng.uniform(2, 40),
        outcome=outcome,
        error="HTTP 503: upstream unavailable" if outcome == "error" else None,
        raw_reply=reply if outcome in ("ok", "invalid") else None,
        cost=None if outcome == "error" else price(prompt, completion),
    )


def fill_state(kb: Path, calls: int, seed: int = 19) -> None:
    """A row for every source as a run over the backlog leaves it, and ``calls`` logged LLM calls.

    Sources the inbox marks done are done, with what their extraction cost; sources still to do failed
    (an endpoint outage): most wait for a retry time ahead, every fourth is parked. Nothing is due, so
    ``run --once`` has nothing to take."""
    from extractor.core.settings import load_settings
    from extractor.run.scheduler import scan_inbox
    from extractor.store.state import SourceState, StateStore

    rng = random.Random(seed)
    now = time.time()
    month = 30 * 86_400
    store = StateStore.open(kb)
    try:
        scan_inbox(kb, load_settings(kb), store)
        head = git(kb, "rev-parse", "main").strip()
        rows = []
        for number, row in enumerate(sorted(store.all_sources().values(), key=lambda r: r.path)):
            finished = now - rng.uniform(3_600, month)
            if row.state is SourceState.DONE:
                prompt, completion = rng.randint(4_000, 30_000), rng.randint(300, 2_500)
                done = {"processed_hash": row.content_hash, "attempts": 1, "started_at": finished - 20,
                        "finished_at": finished, "duration": rng.uniform(5, 60), "prompt_tokens": prompt,
                        "completion_tokens": completion, "cost": price(prompt, completion), "commit_sha": head,
                        "model": "gpt-4o-mini", "worker": rng.randint(1, 4)}  # fmt: skip
                rows.append(row.model_copy(update=done))
            elif row.state is SourceState.DUE:
                parked = number % 4 == 0
                failed = {"state": SourceState.PARKED if parked else SourceState.FAILED, "finished_at": finished,
                          "attempts": 5 if parked else rng.randint(1, 3),
                          "last_error": "HTTP 503 from the endpoint: upstream connect error or disconnect/reset",
                          "next_retry_at": None if parked else now + rng.uniform(3_600, 86_400)}  # fmt: skip
                rows.append(row.model_copy(update=failed))
        store.put_many(rows)
        paths = sorted(store.all_sources())
        reply = json.dumps({"claims": [{"title": "x" * 120, "evidence": ["y" * 400] * 3}], "notes": "z" * 600})
        times = sorted(now - rng.uniform(0, month) for _ in range(calls))
        for start in range(0, calls, 5):  # a source's calls: its parts and retries, and its review
            batch = [logged_call(rng, at, reply) for at in times[start : start + 5]]
            store.log_calls(rng.choice(paths), rng.randint(1, 4), batch, agent=rng.choice(["theseus", "rio"]),
                            stage="review" if rng.random() < 0.2 else "extract")  # fmt: skip
    finally:
        store.close()


def build_kb(kb: Path, corpus: Path, branches: int, calls: int) -> None:
    copy_corpus(corpus, kb)
    claim = make_branches(kb, branches)
    fill_state(kb, calls)
    (kb / BUILT).write_text(claim, encoding="utf-8")  # the claim provenance is asked about


class Tripwire:
    """A loopback port that accepts connections and closes them at once, counting them."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.socket.getsockname()[1]}/v1"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.socket.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.socket.close()


def entry_point(module: bool) -> list[str]:
    """The installed ``extractor`` script beside this Python, else (or with ``module``) ``python -m extractor``."""
    script = Path(sys.executable).with_name("extractor")
    return [sys.executable, "-m", "extractor"] if module or not script.exists() else [str(script)]


def child_env(base_url: str) -> dict[str, str]:
    """The commands' environment: no settings of the caller's, and bytecode written as an installed package has
    it (a PYTHONDONTWRITEBYTECODE of the caller's would make every run compile the project's sources)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXTRACTOR_", "OPENAI_", "PYTHONDONTWRITE"))}
    env.update(OPENAI_BASE_URL=base_url, OPENAI_API_KEY="sk-benchmark")
    return env


def timed(argv: list[str], kb: Path, env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """CPU (user + system) and wall seconds of one run of ``argv`` as a child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=kb, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall, done


def heavy_imports(argv: list[str], kb: Path, env: dict[str, str]) -> list[str]:
    """The heavy modules the command imports, from ``python -X importtime``."""
    command = [sys.executable, "-X", "importtime", *(argv[1:] if argv[0] == sys.executable else argv)]
    stderr = subprocess.run(command, cwd=kb, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL).stderr
    names = {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")}
    return [name for name in HEAVY if name in names]


def commands(entry: list[str], claim: str) -> list[tuple[str, list[str], float | None, set[int]]]:
    """(label, argv, CPU target, expected exit codes) of each command measured."""
    target = TARGET_CPU
    return [
        ("python -c pass", [sys.executable, "-c", "pass"], None, {0}),
        ("extractor --help", [*entry, "--help"], target, {0}),
        ("status", [*entry, "status"], target, {0}),
        ("status --json", [*entry, "status", "--json"], target, {0}),
        ("review list", [*entry, "review", "list"], target, {0}),
        ("costs", [*entry, "costs"], target, {0}),
        ("provenance CLAIM", [*entry, "provenance", claim], target, {0}),
        ("validate", [*entry, "validate"], None, {0, 1}),
        ("run --once (nothing due)", [*entry, "run", "--once"], None, {0}),
    ]


def measure(kb: Path, entry: list[str], runs: int) -> tuple[list[Figure], list[str]]:
    claim = (kb / BUILT).read_text(encoding="utf-8")
    tripwire = Tripwire()
    env = child_env(tripwire.base_url)
    figures, errors = [], []
    try:
        for label, argv, target, expected in commands(entry, claim):
            connections = tripwire.connections
            heavy = heavy_imports(argv, kb, env)  # also the untimed first run, which warms the caches
            samples = [timed(argv, kb, env) for _ in range(runs)]
            code = samples[-1][2].returncode
            if code not in expected:
                last = (samples[-1][2].stderr.strip().splitlines() or ["(no output)"])[-1]
                errors.append(f"{label}: exit {code}: {last}")
            figures.append(
                Figure(
                    command=label,
                    cpu=statistics.median(s[0] for s in samples),
                    wall=statistics.median(s[1] for s in samples),
                    target=target,
                    heavy=heavy,
                    exit_code=code,
                    connects=tripwire.connections - connections,
                    runs=[round(s[0], 3) for s in samples],
                )
            )
    finally:
        tripwire.close()
    return figures, errors


def table(figures: list[Figure]) -> str:
    lines = [
        "| command | CPU s (median) | wall s | target | heavy modules imported | exit | connects |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in figures:
        target = "" if f.target is None else f"< {f.target} {'missed' if f.missed else 'met'}"
        lines.append(
            f"| {f.command} | {f.cpu:.2f} | {f.wall:.2f} | {target} | {', '.join(f.heavy) or '-'} "
            f"| {f.exit_code} | {f.connects} |"
        )
    return "\n".join(lines)


def describe(kb: Path) -> dict[str, int | str]:
    from extractor.store.state import StateStore

    store = StateStore.open(kb)
    try:
        calls = store.db.execute("SELECT COUNT(*) FROM llm_calls").fetchone()[0]
        states = store.counts()
    finally:
        store.close()
    return {
        "claim_files": sum(1 for folder in KB_FOLDERS[:3] for _ in (kb / folder).rglob("*.md")),
        "sources": sum(states.values()),
        **{f"sources_{state}": n for state, n in sorted(states.items())},
        "llm_calls": calls,
        "pending_branches": len(branch_names(kb)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs per command; the median is shown (default 5)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--kb-dir", type=Path, help="build the KB here and keep it; reuse one already built here")
    parser.add_argument("--module", action="store_true", help="run `python -m extractor` (follows PYTHONPATH)")
    parser.add_argument("--branches", type=int, default=17, help="pending extraction branches (default 17)")
    parser.add_argument("--calls", type=int, default=3000, help="logged LLM calls (default 3000)")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if not (args.corpus / "kb").is_dir() or not (args.corpus / "inbox" / "archive").is_dir():
        print(f"skipped: corpus not found at {args.corpus} (it needs kb/ and inbox/archive/)", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory(prefix="startup-") as tmp:
        kb = (args.kb_dir or Path(tmp) / "kb").resolve()
        if not (kb / BUILT).exists():
            if kb.exists() and any(kb.iterdir()):
                print(
                    f"error: {kb} exists and is not a KB this benchmark built; give an empty or new folder",
                    file=sys.stderr,
                )
                return 1
            started = time.perf_counter()
            try:
                build_kb(kb, args.corpus, args.branches, args.calls)
            except (RuntimeError, subprocess.CalledProcessError, OSError) as exc:
                detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else exc
                print(f"error: cannot build the KB at {kb}: {detail}", file=sys.stderr)
                return 1
            print(f"built the KB at {kb} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        entry = entry_point(args.module)
        figures, errors = measure(kb, entry, args.runs)
        shape = {**describe(kb), "claim": (kb / BUILT).read_text(encoding="utf-8")}
    if args.json:
        meta = {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "runs": args.runs,
            "entry": " ".join(entry),
            "kb": shape,
        }
        figures_json = [{**asdict(f), "missed": f.missed} for f in figures]
        print(json.dumps({"meta": meta, "figures": figures_json, "errors": errors}, indent=2))
    else:
        print(
            f"entry point: {' '.join(entry)}; median of {args.runs} runs; KB: "
            + ", ".join(f"{k} {v}" for k, v in shape.items() if k != "claim")
        )
        print(f"CLAIM: {shape['claim']}")
        print(table(figures))
        for error in errors:
            print(f"error: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
