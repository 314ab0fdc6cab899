"""The state store on both backends: the SQLite file under ``.extractor/`` and a Postgres database (``state_url``).

Each behaviour runs against SQLite and against a real, throwaway Postgres server (tests/postgres.py), each test
in a fresh database of its own. Without PostgreSQL's binaries the Postgres half is skipped (failed under CI).
"""

from __future__ import annotations

import io
import logging
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from extractor.cli.main import main
from extractor.cli.output import RedactFilter
from extractor.core import redact
from extractor.core.records import BranchReview, CallRecord, ExtractionReport, ItemReview, Usage
from extractor.core.settings import Settings, SettingsError, load_settings
from extractor.kb.statedb import POSTGRES, SQLITE, StateConnectionError, to_pyformat
from extractor.store.state import (
    MIGRATIONS,
    SourceRow,
    SourceState,
    StateStore,
    StoreError,
    open_store,
    schema_version,
)
from tests import postgres
from tests.conftest import started_together
from tests.drafts import NULL
from tests.fakeopenai import FakeOpenAI, answer
from tests.kbfactory import make_inbox_kb
from tests.postgres import PASSWORD, PostgresServer, free_port, need_bindir

EPOCH = 1733245678.123456  # a timestamp with microseconds: a 4-byte REAL would round it to minutes
DEAD_PID = 2**22 + 12345  # above Linux's default pid_max: no process has it


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """The settings that put the KB's state in SQLite (no state_url) or in a fresh Postgres database."""
    if request.param == "sqlite":
        return Settings()
    return Settings(state_url=request.getfixturevalue("postgres_url"))


@pytest.fixture
def opener(backend: Settings, tmp_path: Path) -> Iterator[Callable[[], StateStore]]:
    """Opens the KB's store as a command would (open_store); every store opened is closed at the end."""
    opened: list[StateStore] = []

    def open_one() -> StateStore:
        opened.append(open_store(tmp_path, backend))
        return opened[-1]

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(opener: Callable[[], StateStore]) -> StateStore:
    return opener()


def call(at: float, **fields: Any) -> CallRecord:
    values: dict[str, Any] = {"model": "m", "request_hash": "h", "prompt_tokens": 100, "completion_tokens": 20,
                              "latency": 0.5, "outcome": "ok", "cost": 0.01} | fields  # fmt: skip
    return CallRecord(at=at, **values)


# --- which backend ---------------------------------------------------------------------------------------


def test_the_backend_follows_state_url(store: StateStore, backend: Settings, tmp_path: Path) -> None:
    state_file = tmp_path / ".extractor" / "state.db"
    if backend.state_url:
        assert store.dialect is POSTGRES and store.path is None and not state_file.exists()
        assert PASSWORD not in store.where and "[REDACTED]" in store.where
    else:
        assert store.dialect is SQLITE and store.path == state_file and state_file.exists()
    assert schema_version(store) == len(MIGRATIONS)


def test_state_url_comes_from_the_environment(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXTRACTOR_STATE_URL", postgres_url)
    assert load_settings(tmp_path).state_url == postgres_url
    store = open_store(tmp_path)  # without settings: the KB's own, environment included
    try:
        assert store.dialect is POSTGRES
        store.put(SourceRow(path="a.md", state=SourceState.DUE))
    finally:
        store.close()
    assert not (tmp_path / ".extractor" / "state.db").exists()


@pytest.mark.parametrize("url", ["mysql://root:hunter2hunter2@db/kb", "https://example.org/kb", "kb.db"])
def test_state_url_must_be_a_postgres_url(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTRACTOR_STATE_URL", url)
    with pytest.raises(SettingsError) as raised:
        load_settings(tmp_path)
    assert str(raised.value) == (
        "EXTRACTOR_STATE_URL: state_url: must be a postgresql:// or postgres:// URL "
        "(postgresql://user:password@host:5432/name)"
    )
    (tmp_path / "extractor.toml").write_text(f'state_url = "{url}"\n')
    monkeypatch.delenv("EXTRACTOR_STATE_URL")
    with pytest.raises(SettingsError, match=r"extractor.toml: state_url: must be a postgresql://"):
        load_settings(tmp_path)
    assert Settings(state_url="postgres://u@h/kb").state_url == "postgres://u@h/kb"


def test_without_postgres_binaries_the_tests_skip_but_fail_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "find_bindir", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        need_bindir()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must install"):
        need_bindir()


def test_placeholders_are_translated_outside_quoted_text() -> None:
    assert to_pyformat("SELECT COALESCE(x, '?') FROM t WHERE a = ? AND b = :name") == (
        "SELECT COALESCE(x, '?') FROM t WHERE a = %s AND b = %(name)s"
    )
    assert to_pyformat("SELECT 'it''s 5%' || x::text, 10 % 3 FROM t WHERE c = ?") == (
        "SELECT 'it''s 5%%' || x::text, 10 %% 3 FROM t WHERE c = %s"
    )


# --- sources ----------------------------------------------------------------------------------------------


def test_put_get_update_and_restore(store: StateStore) -> None:
    row = SourceRow(path="inbox/a.md", state=SourceState.DUE, mtime_ns=1_733_245_678_123_456_789, size=3_000_000_000,
                    changed_after_processing=True, next_retry_at=EPOCH, cost=0.000123456789)  # fmt: skip
    store.put(row)
    got = store.get("inbox/a.md")
    assert got is not None and got.model_dump(exclude={"updated_at"}) == row.model_dump(exclude={"updated_at"})
    assert got.next_retry_at == EPOCH and got.mtime_ns == 1_733_245_678_123_456_789  # exact, not rounded
    store.update("inbox/a.md", state=SourceState.FAILED, attempts=2, last_error="boom", published=True)
    got = store.get("inbox/a.md")
    assert got is not None and (got.state, got.attempts, got.last_error, got.published) == (
        SourceState.FAILED, 2, "boom", True,
    )  # fmt: skip
    store.update_or_insert("inbox/b.md", state=SourceState.AWAITING_REVIEW, branch="extract/b")
    store.put_many([SourceRow(path="inbox/c.md", state=SourceState.DONE), SourceRow(path="inbox/a.md",
                    state=SourceState.DUE)])  # fmt: skip
    assert {p: r.state for p, r in store.all_sources().items()} == {
        "inbox/a.md": SourceState.DUE, "inbox/b.md": SourceState.AWAITING_REVIEW, "inbox/c.md": SourceState.DONE,
    }  # fmt: skip
    assert [r.path for r in store.unpublished()] == ["inbox/b.md"]
    store.restore("inbox/b.md", None)
    store.restore("inbox/c.md", SourceRow(path="inbox/c.md", state=SourceState.PARKED, changed_after_processing=True))
    assert store.get("inbox/b.md") is None
    assert store.changed_after_processing() == ["inbox/c.md"]


def test_counts_failures_and_recovery_of_dead_runs(store: StateStore) -> None:
    store.put_many([SourceRow(path=f"s{n}.md", state=state) for n, state in enumerate(
        [SourceState.DUE, SourceState.DONE, SourceState.FAILED, SourceState.PARKED, SourceState.INVALID])])  # fmt: skip
    assert store.claim("alive.md", os.getpid(), 1)
    assert store.claim("dead.md", DEAD_PID, 2)
    # A run left by a dead process counts as due, never as running.
    assert store.counts() == {"due": 2, "done": 1, "failed": 1, "parked": 1, "invalid": 1, "running": 1}
    assert {r.path for r in store.recent_failures()} == {"s2.md", "s3.md", "s4.md"}
    assert store.dead_runs() == ["dead.md"]
    assert store.recover_dead_runs() == ["dead.md"]
    dead = store.get("dead.md")
    assert dead is not None and dead.state is SourceState.DUE and dead.owner_pid is None
    assert not store.claim("alive.md", DEAD_PID, 3)  # a live run is not taken over


def _claim(kb: str, url: str | None, path: str, start: Any, results: Any, done: Any) -> None:
    store = open_store(Path(kb), Settings(state_url=url))
    start.wait()
    results.put(store.claim(path, os.getpid(), 0))
    done.wait(60)  # alive until every process has tried: a dead owner's claim may be taken over
    store.close()


def test_of_processes_claiming_one_source_exactly_one_wins(
    store: StateStore, backend: Settings, tmp_path: Path
) -> None:
    context = mp.get_context("spawn")
    for trial in range(3):
        start, done, results = context.Event(), context.Event(), context.Queue()
        path = f"inbox/contested-{trial}.md"
        if trial:  # a source the store knows already, and one it does not (the first trial)
            store.put(SourceRow(path=path, state=SourceState.DUE))
        processes = [
            context.Process(target=_claim, args=(str(tmp_path), backend.state_url, path, start, results, done))
            for _ in range(4)
        ]
        for process in processes:
            process.start()
        start.set()
        won = [results.get(timeout=60) for _ in processes]
        done.set()
        for process in processes:
            process.join(timeout=60)
        assert [p.exitcode for p in processes] == [0] * 4
        assert sorted(won) == [False, False, False, True]
        row = store.get(path)
        assert row is not None and row.state is SourceState.RUNNING


# --- calls, costs, the cache ------------------------------------------------------------------------------


def test_log_calls_costs_and_totals(store: StateStore) -> None:
    now = time.time()
    store.log_calls("a.md", 1, [call(EPOCH), call(now, outcome="cached", cost=None),
                                call(now, outcome="error", error="HTTP 500", cost=None, endpoint="gpu1 m")],
                    agent="theseus")  # fmt: skip
    store.log_calls("b.md", 2, [call(now, prompt_tokens=3_000_000_000, cost=1.5)], stage="review")
    calls = store.calls_for("a.md")
    assert [c["outcome"] for c in calls] == ["ok", "cached", "error"]
    assert calls[0]["at"] == EPOCH and calls[0]["agent"] == "theseus" and calls[2]["endpoint"] == "gpu1 m"
    assert store.totals() == {"calls": 4, "prompt_tokens": 3_000_000_300, "completion_tokens": 80, "cost": 1.51}
    assert store.spent_since(now - 1) == pytest.approx(1.5)
    by_stage = {row["stage"]: row for row in store.cost_report("stage")}
    assert by_stage["extract"] == {"stage": "extract", "calls": 3, "cache_hits": 1, "prompt_tokens": 300,
                                   "cached_tokens": 0, "completion_tokens": 60, "cost": pytest.approx(0.01),
                                   "unpriced_calls": 1}  # fmt: skip
    assert by_stage["review"]["prompt_tokens"] == 3_000_000_000
    days = store.cost_report("day")
    assert [row["day"] for row in days] == sorted({time.strftime("%Y-%m-%d", time.localtime(t)) for t in (EPOCH, now)})
    assert [row["model"] for row in store.cost_report("model")] == ["m"]
    assert {row["endpoint"] for row in store.cost_report("endpoint")} == {"gpu1 m", "(the one endpoint)"}
    assert store.cost_report("source", since=now - 1)[0] == store.cost_report("source")[0]  # b.md costs most
    assert [row["source"] for row in store.cost_report("source", since=now + 60)] == []


def test_cost_per_source_and_the_cache(store: StateStore) -> None:
    assert store.cost_per_source() == 0.0
    store.put_many([SourceRow(path=f"{n}.md", state=SourceState.DONE, cost=n / 10, finished_at=EPOCH + n)
                    for n in range(1, 5)])  # fmt: skip
    assert store.cost_per_source(recent=2) == pytest.approx(0.35)
    assert store.cached_answer("k") is None
    store.cache_answer("k", "m", "first", 10, 2, 0.5)
    store.cache_answer("k", "m", "second", 10, 2, None)  # the same request again: replaced
    assert store.cached_answer("k") == "second"


# --- feeds, reviews, cycles, extractions, batches ---------------------------------------------------------


def test_feed_entries(store: StateStore) -> None:
    store.remember_feed_entry("https://f.example/rss", "e1", "inbox/e1.md")
    store.remember_feed_entry("https://f.example/rss", "e1", "inbox/e1-again.md")
    store.remember_feed_entry("https://f.example/rss", "e2", None)
    assert store.seen_feed_entries("https://f.example/rss") == {"e1", "e2"}
    assert store.seen_feed_entries("https://other.example/rss") == set()


def review(commit: str, reviewer: str = "lead", verdict: str = "approve", cost: float | None = 0.2) -> BranchReview:
    item = ItemReview.model_validate({"path": "claims/x.md", "kind": "claim", "verdict": verdict})
    return BranchReview.model_validate({
        "branch": "extract/a", "commit": commit, "source_path": "a.md", "reviewer": reviewer, "agent": "leo",
        "model": "m", "prompt_hash": "p", "items": [item], "usage": Usage(cost=cost), "at": EPOCH,
    })  # fmt: skip


def test_reviews_failures_and_fixes(store: StateStore) -> None:
    store.record_review(review("c1", verdict="reject"))
    store.record_review(review("c1"))
    store.record_review(review("c1", reviewer="domain", cost=None))
    store.record_review(review("c2", cost=0.4))
    assert [(r.reviewer, r.verdict) for r in store.reviews_for("c1")] == [("lead", "approve"), ("domain", "approve")]
    assert [r.commit for r in store.latest_reviews("a.md")] == ["c2"]
    assert store.review_cost_per_branch() == pytest.approx((0.2 + 0.2 + 0.4) / 3)
    assert store.review_failures("extract/a", "c1") == 0
    store.record_review_failure("extract/a", "c1", "timed out")
    store.record_review_failure("extract/a", "c1", "timed out again")
    assert store.review_failures("extract/a", "c1") == 2
    assert not store.fix_recorded("extract/a", "c1")
    store.record_fix("extract/a", "c1", None)
    store.record_fix("extract/a", "c1", "c1-fixed")
    assert store.fix_recorded("extract/a", "c1") and store.fix_recorded("extract/a", "c1-fixed")


def test_cycles_extractions_and_batches(store: StateStore) -> None:
    first, second = store.start_cycle("once"), store.start_cycle("daemon")
    assert second > first
    store.finish_cycle(second, taken=3, done=2, failed=1, note="budget")
    last = store.last_cycle()
    assert last is not None
    assert (last["id"], last["mode"], last["taken"], last["note"]) == (second, "daemon", 3, "budget")
    report = ExtractionReport(source_path="a.md", commit="c1", branch="extract/a", worker=1, agent="leo", model="m",
                              prompt_hash="p", parts=2, claims=[], enriched=[], dropped=[], part_notes=[],
                              prompt_tokens=5, completion_tokens=6, cost=None)  # fmt: skip
    store.record_extraction(report)
    assert store.extraction_for("c1") == report and store.extraction_for("c9") is None
    assert store.anchored_share_since(0) == (0, 0)
    batch = {"id": "b1", "created_at": EPOCH, "status": "in_progress", "input_file_id": "f1", "output_file_id": None,
             "error_file_id": None, "items": "[]", "collected_at": None, "estimated_cost": 1.25}  # fmt: skip
    store.save_batch(batch)
    store.save_batch(batch | {"id": "b2", "created_at": EPOCH + 5, "estimated_cost": 0.5})
    assert store.pending_batch_cost() == pytest.approx(1.75)
    store.save_batch(batch | {"status": "completed", "collected_at": EPOCH + 1})
    assert [b["id"] for b in store.batches(open_only=True)] == ["b2"]
    assert [b["status"] for b in store.batches()] == ["completed", "in_progress"]


# --- Postgres only: opening together, errors, redaction ---------------------------------------------------


def _open_at(url: str, start: Any) -> None:
    start.wait()
    StateStore(url=url).close()


def test_processes_opening_a_new_database_together_migrate_it_once(postgres_server: PostgresServer) -> None:
    for _ in range(3):
        url = postgres_server.new_database()
        assert started_together(_open_at, url) == [0] * 6
        store = StateStore(url=url)
        try:
            assert schema_version(store) == len(MIGRATIONS)
            assert store.db.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 1
        finally:
            store.close()
        postgres_server.drop_database(url)


def test_the_schema_keeps_big_integers_and_double_precision(postgres_url: str) -> None:
    store = StateStore(url=postgres_url)
    try:
        columns = "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'sources'"
        types = dict(store.db.execute(columns).fetchall())
        assert types["mtime_ns"] == types["size"] == "bigint"
        assert types["next_retry_at"] == types["updated_at"] == "double precision"
        identity = store.db.execute(
            "SELECT is_identity FROM information_schema.columns WHERE table_name = 'cycles' AND column_name = 'id'"
        ).fetchone()[0]
        assert identity == "YES"
    finally:
        store.close()


def one_line_without_password(message: str) -> None:
    assert "\n" not in message and PASSWORD not in message and "wrong-Pass-6d1e" not in message
    assert "[REDACTED]" in message


def test_a_refused_password_is_one_line_naming_the_redacted_url(postgres_server: PostgresServer) -> None:
    url = postgres_server.url(password="wrong-Pass-6d1e")
    with pytest.raises(StateConnectionError) as raised:
        StateStore(url=url)
    assert isinstance(raised.value, StoreError)
    message = str(raised.value)
    one_line_without_password(message)
    assert message.startswith(f"postgresql://extractor:[REDACTED]@127.0.0.1:{postgres_server.port}/postgres: ")
    assert "cannot connect to the state database" in message and "password authentication failed" in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_an_unreachable_server_is_one_line(postgres_server: PostgresServer) -> None:
    port = free_port()
    with pytest.raises(StateConnectionError) as raised:
        StateStore(url=postgres_server.url(port=port))
    one_line_without_password(str(raised.value))
    assert f"127.0.0.1:{port}" in str(raised.value) and "Connection refused" in str(raised.value)


def test_commands_print_one_line_without_the_password(
    postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    kb = make_inbox_kb(tmp_path / "kb", 1)
    monkeypatch.setenv("EXTRACTOR_STATE_URL", postgres_server.url(password="wrong-Pass-6d1e"))
    assert main(["status", "--kb", str(kb)]) == 1
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("extractor: postgresql://extractor:[REDACTED]@127.0.0.1:")
    one_line_without_password(lines[0])
    assert "Traceback" not in captured.err and "wrong-Pass-6d1e" not in captured.out


def test_log_lines_and_errors_with_the_state_url_show_no_password(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redact, "_registered", set())
    settings = Settings(state_url=postgres_url.replace("127.0.0.1", "db.internal"))
    redact.register_settings(settings)
    assert PASSWORD in redact.known_secrets()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactFilter())
    logger = logging.getLogger("extractor.test-state-url")
    logger.addHandler(handler)
    try:
        logger.warning("state database %s unreachable", settings.state_url)
        logger.warning("the password alone: %s", PASSWORD)
        try:
            raise StoreError(f"cannot use {settings.state_url}")
        except StoreError:
            logger.exception("poll failed")
    finally:
        logger.removeHandler(handler)
    written = stream.getvalue()
    assert PASSWORD not in written and "the password alone: [REDACTED]" in written
    assert "postgresql://extractor:[REDACTED]@db.internal:" in written
    # A password given as a parameter is a secret too.
    query = f"postgresql://extractor@db.internal/kb?sslmode=require&password={PASSWORD}"
    assert PASSWORD in redact.url_secrets(query)
    assert redact.scrub(f"cannot reach {query}") == (
        "cannot reach postgresql://extractor@db.internal/kb?sslmode=require&password=[REDACTED]"
    )


# --- a whole run with its state in Postgres ----------------------------------------------------------------


def test_a_run_keeps_its_state_calls_and_limits_in_postgres(
    postgres_url: str, tmp_path: Path, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("EXTRACTOR_STATE_URL", postgres_url)
    fake_llm.default = answer(NULL)
    kb = make_inbox_kb(tmp_path / "kb", 4, "retry_initial_wait = 0.01\nworkers = 2\nrequests_per_minute = 6000\n"
                       "tokens_per_minute = 10000000\nmax_per_cycle = 10\n")  # fmt: skip
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    capsys.readouterr()
    state = kb / ".extractor"
    assert not (state / "state.db").exists() and not (state / "ratelimit.sqlite").exists()
    store = StateStore(url=postgres_url)
    try:
        assert store.counts() == {"awaiting_review": 4}
        assert len(store.calls_for("inbox/archive/2026-01-00-source-00.md")) == 1
        assert store.last_cycle() is not None
        tables = {row[0] for row in store.db.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"paused", "slowed"} <= tables and any(t.startswith("ratelimit___requests_") for t in tables)
    finally:
        store.close()
    assert main(["status", "--kb", str(kb), "--json"]) == 0
    assert '"awaiting_review": 4' in capsys.readouterr().out
    assert main(["run", "--once", "--kb", str(kb)]) == 0  # nothing is due again
    assert len(fake_llm.request_times) == 4
    assert main(["doctor", "--kb", str(kb)]) == 0
    out = capsys.readouterr().out
    assert "the state store is a Postgres database (state_url), not a file doctor rebuilds" in out
    assert PASSWORD not in out
    assert main(["doctor", "--kb", str(kb), "--rebuild"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "repair it with Postgres's own tools" in err and PASSWORD not in err
