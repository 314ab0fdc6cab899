"""Failures that end in one line and leave the KB and its state right: a damaged state store (and ``doctor``,
which rebuilds it from git), a full disk, a missing main branch or empty repository, and names that are no
extraction branch."""

from __future__ import annotations

import os
import re
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from extractor.cli.demo import create_demo_kb
from extractor.cli.main import main
from extractor.core.errors import ExtractorError
from extractor.core.settings import load_settings
from extractor.kb.gitrepo import GitError, require_main_branch
from extractor.kb.index import KBIndex
from extractor.review.branches import reject, show_data
from extractor.review.decide import accept_branch, reject_branch
from extractor.review.serve import make_server
from extractor.run.doctor import rebuild_state
from extractor.store.state import SourceRow, SourceState, StateCorruptError, StateStore
from tests.conftest import git
from tests.drafts import source_body
from tests.fakeopenai import FakeOpenAI, Reply, answer, completion
from tests.test_cycle import FULLSTACK, FULLSTACK_ANSWER, NULL

ROOT = Path(__file__).resolve().parent.parent
HANSON = "inbox/archive/2013-00-00-hanson-futarchy-vote-values-bet-beliefs.md"
HANSON_SLUG = "2013-00-00-hanson-futarchy-vote-values-bet-beliefs"


def scripted(request: dict[str, Any]) -> Reply:
    """One claim for the full-stack alignment paper, a null result for every other source."""
    return answer(FULLSTACK_ANSWER if "thick models of value" in source_body(request).lower() else NULL)


@pytest.fixture
def endpoint(fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAI:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("EXTRACTOR_RETRY_INITIAL_WAIT", "0.01")
    fake_llm.responder = scripted
    return fake_llm


def ran_kb(target: Path, mode: str, capsys: pytest.CaptureFixture[str]) -> Path:
    """The demo KB after one cycle against the scripted endpoint: five sources done (main mode) or five
    extraction branches awaiting review (branch mode)."""
    kb = create_demo_kb(target)
    if mode == "main":
        (kb / "extractor.toml").write_text('commit_mode = "main"\n', encoding="utf-8")
        git(kb, "add", "extractor.toml")
        git(kb, "-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-qm", "main mode")
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    capsys.readouterr()
    return kb


def ran_kb_and_its_record(
    target: Path, mode: str, capsys: pytest.CaptureFixture[str]
) -> tuple[Path, dict[str, SourceRow]]:
    """ran_kb, with what its state store recorded of each source."""
    kb = ran_kb(target, mode, capsys)
    store = StateStore.open(kb)
    try:
        return kb, store.all_sources()
    finally:
        store.close()


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    """What a failed command printed on stderr, checked to be one line and no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


# --- a damaged state store, and doctor -----------------------------------------------------------------


def overwrite_pages(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[4096 : 4096 * 6] = b"\x5a" * (4096 * 5)  # the header stays: the file opens, its tables do not read
    path.write_bytes(bytes(data))


def overwrite_every_page(path: Path) -> None:
    """Every page after the first: no table is left whole on a later page to take a run's writes (the schema
    grows, and with it the pages that :func:`overwrite_pages` leaves)."""
    data = bytearray(path.read_bytes())
    data[4096:] = b"\x5a" * (len(data) - 4096)
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def overwrite_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[:512] = b"\x00" * 512
    path.write_bytes(bytes(data))


def not_sqlite(path: Path) -> None:
    path.write_text("a note someone saved over the state file\n" * 50, encoding="utf-8")


DAMAGE: dict[str, Callable[[Path], None]] = {
    "pages": overwrite_pages,
    "truncated": truncate,
    "header": overwrite_header,
    "not-sqlite": not_sqlite,
}


def damage(kb: Path, how: str) -> Path:
    path = kb / ".extractor" / "state.db"
    assert not path.with_name("state.db-wal").exists()  # the cycle closed the store: everything is in the file
    DAMAGE[how](path)
    return path


def read_everything(kb: Path) -> None:
    store = StateStore.open(kb)
    try:
        store.all_sources()
        store.counts()
        store.totals()
        store.last_cycle()
    finally:
        store.close()


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_state_store_is_one_line_naming_the_file_and_what_to_do(
    how: str, tmp_path: Path, endpoint: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    kb = ran_kb(tmp_path / "kb", "main", capsys)
    path = damage(kb, how)
    with pytest.raises(StateCorruptError) as raised:
        read_everything(kb)
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and message.endswith("run `extractor doctor` to rebuild it from git")
    assert "\n" not in message and isinstance(raised.value, ExtractorError)

    asked = len(endpoint.requests)
    head = git(kb, "rev-parse", "HEAD")
    for argv in (["status", "--kb", str(kb)], ["extract", str(kb / HANSON), "--force"]):
        assert main(argv) != 0
        line = one_line_error(capsys)
        assert str(path) in line and "extractor doctor" in line, line
    assert len(endpoint.requests) == asked and git(kb, "rev-parse", "HEAD") == head  # nothing was paid or written


def test_doctor_rebuilds_a_damaged_store_from_git_and_no_processed_source_is_extracted_again(
    tmp_path: Path, endpoint: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    kb, recorded = ran_kb_and_its_record(tmp_path / "kb", "main", capsys)
    path = kb / ".extractor" / "state.db"
    overwrite_every_page(path)
    damaged = path.read_bytes()
    assert main(["run", "--once", "--kb", str(kb)]) != 0
    assert "extractor doctor" in one_line_error(capsys)

    report = rebuild_state(kb, load_settings(kb))
    assert not report.healthy and report.problem == "database disk image is malformed"
    assert report.moved_to is not None and Path(report.moved_to).read_bytes() == damaged  # kept as it was
    assert report.sources == {"done": 5} and report.from_commits == 5
    assert any("LLM call log" in what for what in report.lost)  # history that git does not hold is named
    store = StateStore.open(kb)
    try:
        rebuilt = store.all_sources()
    finally:
        store.close()
    assert set(rebuilt) == set(recorded)
    for path, row in rebuilt.items():
        before = recorded[path]
        assert (row.state, row.file_status, row.commit_sha) == (before.state, before.file_status, before.commit_sha)
        assert (row.model, row.prompt_hash, row.processed_hash) == (before.model, before.prompt_hash,
                                                                    before.processed_hash)  # fmt: skip
        assert not row.changed_after_processing
    assert rebuilt[FULLSTACK].file_status == "processed"

    again = rebuild_state(kb, load_settings(kb))
    assert again.healthy and again.lines() == [f"{kb / '.extractor' / 'state.db'}: the state store is fine "
                                               "(integrity check: ok)"]  # fmt: skip

    asked, head = len(endpoint.requests), git(kb, "rev-parse", "HEAD")
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    assert len(endpoint.requests) == asked and git(kb, "rev-parse", "HEAD") == head


def test_a_forced_rebuild_keeps_what_still_reads_failures_and_history_included(
    tmp_path: Path, endpoint: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    bai = "inbox/archive/2022-12-00-bai-constitutional-ai-harmlessness-from-ai-feedback.md"
    endpoint.responder = lambda request: (
        completion("not json") if "constitutional" in source_body(request).lower() else scripted(request)
    )
    kb = create_demo_kb(tmp_path / "kb")
    assert main(["run", "--once", "--kb", str(kb)]) == 1
    capsys.readouterr()
    store = StateStore.open(kb)
    failed, calls = store.get(bai), store.totals()["calls"]
    store.close()
    assert failed is not None and failed.state is SourceState.FAILED and failed.attempts == 1

    report = rebuild_state(kb, load_settings(kb), force=True)
    assert not report.healthy and report.problem == "asked to rebuild" and report.lost == []
    assert report.kept["llm_calls"] == calls and report.kept["cycles"] == 1
    assert report.sources == {"awaiting_review": 4, "failed": 1}
    store = StateStore.open(kb)
    try:
        row = store.get(bai)
        assert row is not None and (row.state, row.attempts, row.last_error, row.next_retry_at) == (
            failed.state, failed.attempts, failed.last_error, failed.next_retry_at)  # fmt: skip
        assert store.totals()["calls"] == calls
    finally:
        store.close()


def test_doctor_knows_the_branches_awaiting_review_after_a_rebuild(
    tmp_path: Path, endpoint: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    kb, recorded = ran_kb_and_its_record(tmp_path / "kb", "branch", capsys)
    damage(kb, "not-sqlite")
    report = rebuild_state(kb, load_settings(kb))
    assert report.sources == {"awaiting_review": 5} and report.pending_branches == 5 and report.from_commits == 5
    assert any(what.startswith("the LLM call log") for what in report.lost)  # nothing could be read this time
    store = StateStore.open(kb)
    try:
        rows = store.all_sources()
    finally:
        store.close()
    assert set(rows) == set(recorded)
    for path, row in rows.items():
        branch = f"extract/{Path(path).stem}"
        assert row.branch == branch and row.commit_sha == git(kb, "rev-parse", branch).strip()
        before = recorded[path]
        assert (row.branch, row.commit_sha, row.model, row.prompt_hash, row.worker) == (
            before.branch, before.commit_sha, before.model, before.prompt_hash, before.worker)  # fmt: skip
    asked = len(endpoint.requests)
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    assert len(endpoint.requests) == asked
    assert main(["review", "list", "--kb", str(kb)]) == 0
    assert "5 extraction(s) awaiting review" in capsys.readouterr().out


def test_the_daemon_stops_on_a_damaged_state_store_with_one_line(
    tmp_path: Path, endpoint: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    """No poll repairs a damaged store: the daemon ends with the line saying what to do, instead of logging a
    traceback every poll."""
    kb = ran_kb(tmp_path / "kb", "main", capsys)
    path = damage(kb, "pages")
    done = extractor_cli(kb, "run", "--kb", str(kb), timeout=90)
    assert done.returncode != 0 and "Traceback" not in done.stderr + done.stdout
    assert done.stderr.strip().splitlines() == [
        f"extractor: {path}: the state store is damaged: database disk image is malformed; "
        "run `extractor doctor` to rebuild it from git"
    ]


# --- a full disk, and sources left running ---------------------------------------------------------------


def test_a_source_claimed_by_a_process_that_is_gone_counts_as_due_not_running(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path)
    try:
        ended = subprocess.Popen([sys.executable, "-c", "pass"])
        ended.wait()
        assert store.claim("inbox/dead.md", ended.pid, worker=1)
        # This process's number, claimed long before this process started: a process that got the number later.
        assert store.claim("inbox/reused.md", os.getpid(), worker=1)
        store.update("inbox/reused.md", started_at=time.time() - 10 * 24 * 3600)
        assert store.claim("inbox/live.md", os.getpid(), worker=1)
        assert store.counts() == {"due": 2, "running": 1}
        assert store.claim("inbox/reused.md", os.getpid(), worker=2)  # not refused as "being extracted"
        assert sorted(store.recover_dead_runs()) == ["inbox/dead.md"]
    finally:
        store.close()


def full_disk_run(kb: Path, argv: list[str], limit: int) -> subprocess.CompletedProcess[str]:
    """``extractor ARGV`` with files limited to ``limit`` bytes (writes past it fail with EFBIG, as on a full
    disk; SIGXFSZ ignored so the write fails instead of the process dying)."""

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "extractor", *argv], cwd=kb, env=env, capture_output=True,
                          text=True, preexec_fn=limited, timeout=300)  # fmt: skip


LIMIT = 150_000
BIG = "inbox/archive/2099-01-00-big-report.md"


def big_kb(target: Path, indexed: bool = True) -> Path:
    """A main-mode KB with a source larger than ``LIMIT``: its write journal cannot be written. ``indexed``:
    its KB index was built before (as a KB's is once it has run)."""
    kb = create_demo_kb(target)
    (kb / "extractor.toml").write_text('commit_mode = "main"\ncache = false\n', encoding="utf-8")
    (kb / BIG).write_text(
        "---\ntype: source\ntitle: Big report\nauthor: A\ndate: 2099-01-00\ndomain: ai-alignment\n"
        "status: unprocessed\n---\n\n" + "Words that say little about anything at all. " * 4000 + "\n",
        encoding="utf-8",
    )
    git(kb, "add", "-A")
    git(kb, "-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-qm", "a big source")
    StateStore.open(kb).close()  # made before the limit, as a KB's store is
    if indexed:
        settings = load_settings(kb)
        KBIndex.load(kb, exclude=[settings.inbox_dir], at=settings.main_branch)
    return kb


def test_a_kb_index_that_cannot_be_written_is_one_line(tmp_path: Path, endpoint: FakeOpenAI) -> None:
    kb = big_kb(tmp_path / "kb", indexed=False)
    (kb / ".extractor" / "index").write_text("a file where the index's folder goes\n", encoding="utf-8")
    head = git(kb, "rev-parse", "HEAD")
    done = subprocess.run([sys.executable, "-m", "extractor", "extract", BIG], cwd=kb, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    expected = r"^extractor: .*/\.extractor/index: cannot open the KB index: "
    assert len(lines) == 1 and re.match(expected, lines[0]), done.stderr
    assert git(kb, "rev-parse", "HEAD") == head and git(kb, "status", "--porcelain") == ""
    assert SourceState.RUNNING.value not in raw_states(kb).values()


def raw_states(kb: Path) -> dict[str, str]:
    db = sqlite3.connect(kb / ".extractor" / "state.db")
    try:
        return dict(db.execute("SELECT path, state FROM sources").fetchall())
    finally:
        db.close()


def test_on_a_full_disk_extract_names_the_write_that_failed_and_leaves_nothing_running(
    tmp_path: Path, endpoint: FakeOpenAI
) -> None:
    kb = big_kb(tmp_path / "kb")
    endpoint.responder = lambda request: answer({**NULL, "notes": "n " * 100_000})  # its logged reply is big too
    head = git(kb, "rev-parse", "HEAD")
    done = full_disk_run(kb, ["extract", BIG], LIMIT)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    # The first write that failed leads, naming its file; the store's own failure comes after it.
    assert re.match(rf"^extractor: {re.escape(BIG)}: \[Errno 27\] File too large: '.*journal\.json'", lines[0])
    assert git(kb, "rev-parse", "HEAD") == head and git(kb, "status", "--porcelain") == ""
    store = StateStore.open(kb)
    try:
        assert SourceState.RUNNING.value not in store.counts()
    finally:
        store.close()
    status = subprocess.run([sys.executable, "-m", "extractor", "status", "--kb", str(kb)], capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert "running" not in status.stdout


def test_on_a_full_disk_a_cycle_stops_with_one_line_and_gives_its_sources_back(
    tmp_path: Path, endpoint: FakeOpenAI
) -> None:
    kb = big_kb(tmp_path / "kb")
    endpoint.responder = lambda request: answer({**NULL, "notes": "n " * 100_000})
    done = full_disk_run(kb, ["run", "--once", "--kb", str(kb)], LIMIT)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    # The first source was committed; its record did not fit: the line says both.
    assert re.match(rf"^extractor: {re.escape(HANSON)}: null-result, committed as [0-9a-f]{{12}}, but not recorded "
                    r"\(.*state\.db: cannot write the state store: .*\); the next run finds the commit in git$",
                    lines[0])  # fmt: skip
    assert SourceState.RUNNING.value not in raw_states(kb).values()  # given back by the process itself


# --- no main branch, no commits ----------------------------------------------------------------------------


def test_a_missing_main_branch_or_an_empty_repository_is_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q", "-b", "main")
    with pytest.raises(GitError, match=r": the repository has no commits yet: commit something first$"):
        require_main_branch(empty, "main")
    kb = create_demo_kb(tmp_path / "kb")
    git(kb, "branch", "extract/some-source")
    assert require_main_branch(kb, "main") == git(kb, "rev-parse", "main").strip()
    with pytest.raises(GitError) as raised:
        require_main_branch(kb, "trunk")
    assert str(raised.value) == (f"{kb}: branch 'trunk' does not exist; set main_branch in extractor.toml "
                                 "(branches here: main, extract/some-source)")  # fmt: skip
    with pytest.raises(GitError, match="does not exist"):
        require_main_branch(kb, "main~1")  # a branch's name, never a revision


def extractor_cli(
    kb: Path, *argv: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "extractor", *argv], cwd=kb, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=timeout)  # fmt: skip


def test_run_and_review_without_the_main_branch_stop_at_once_and_leave_nothing_running(tmp_path: Path) -> None:
    kb = create_demo_kb(tmp_path / "kb")
    (kb / "extractor.toml").write_text('main_branch = "trunk"\n', encoding="utf-8")
    unreachable = {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    for argv in (["run", "--once", "--kb", str(kb)], ["review", "list", "--kb", str(kb)]):
        done = extractor_cli(kb, *argv, env=unreachable)
        assert done.returncode != 0 and "Traceback" not in done.stderr
        assert done.stderr.strip() == (f"extractor: {kb}: branch 'trunk' does not exist; set main_branch in "
                                       "extractor.toml (branches here: main)")  # fmt: skip
    status = extractor_cli(kb, "status", "--kb", str(kb))
    assert status.returncode == 0 and "running" not in status.stdout
    if (kb / ".extractor" / "state.db").exists():
        assert SourceState.RUNNING.value not in raw_states(kb).values()

    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q", "-b", "main")
    done = extractor_cli(empty, "run", "--once", "--kb", str(empty), env=unreachable)
    assert done.returncode != 0
    assert done.stderr.strip() == f"extractor: {empty}: the repository has no commits yet: commit something first"


# --- names that are no extraction branch ---------------------------------------------------------------------

NOT_BRANCHES = [f"{HANSON_SLUG}~1", f"{HANSON_SLUG}^", f"{HANSON_SLUG}@{{0}}", f"extract/{HANSON_SLUG}~1",
                f"main..extract/{HANSON_SLUG}", f"..{HANSON_SLUG}", f"{HANSON_SLUG}:claims", "main", "HEAD",
                "extract/", ""]  # fmt: skip


def test_review_commands_take_only_extraction_branch_names(
    tmp_path: Path, endpoint: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    kb = ran_kb(tmp_path / "kb", "branch", capsys)
    settings = load_settings(kb)
    refs = git(kb, "for-each-ref")
    for name in NOT_BRANCHES:
        for decide in (
            lambda n: reject_branch(kb, n, settings, "not wanted", retry=False),
            lambda n: reject_branch(kb, n, settings, None, retry=True),
            lambda n: reject(kb, n, settings, "not wanted", retry=False),
            lambda n: accept_branch(kb, n, settings),
            lambda n: show_data(kb, n, settings),
        ):
            with pytest.raises(ExtractorError, match=r"^not an extraction branch: "):
                decide(name)
        for argv in (["reject", name, "--reason", "x"], ["accept", name], ["show", name]):
            assert main(["review", *argv, "--kb", str(kb)]) != 0
            assert one_line_error(capsys).startswith("extractor: not an extraction branch: ")
    assert git(kb, "for-each-ref") == refs  # no branch moved or went away, main included
    show_data(kb, HANSON_SLUG, settings)
    show_data(kb, f"extract/{HANSON_SLUG}", settings)


def test_the_review_server_answers_404_for_names_that_are_no_extraction_branch(
    tmp_path: Path, endpoint: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    kb = ran_kb(tmp_path / "kb", "branch", capsys)
    server = make_server(kb, load_settings(kb))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        root = f"http://{host!s}:{port}"
        with urllib.request.urlopen(f"{root}/review/{HANSON_SLUG}", timeout=30) as page:
            token = re.search(r'name="token" value="([^"]+)"', page.read().decode()).group(1)  # type: ignore[union-attr]
        refs = git(kb, "for-each-ref")
        for name in [n for n in NOT_BRANCHES if n]:
            quoted = urllib.parse.quote(name, safe="")
            for method, url, data in (
                ("GET", f"{root}/review/{quoted}", None),
                ("POST", f"{root}/review/{quoted}/reject",
                 urllib.parse.urlencode({"token": token, "reason": "no"}).encode()),
                ("POST", f"{root}/review/{quoted}/accept", urllib.parse.urlencode({"token": token}).encode()),
            ):  # fmt: skip
                request = urllib.request.Request(url, data=data, method=method)
                if data is not None:
                    request.add_header("Content-Type", "application/x-www-form-urlencoded")
                with pytest.raises(urllib.error.HTTPError) as raised:
                    urllib.request.urlopen(request, timeout=30)
                assert raised.value.code == 404, (method, name, raised.value.code)
        assert git(kb, "for-each-ref") == refs
    finally:
        server.shutdown()
        server.server_close()
