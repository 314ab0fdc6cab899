"""Rate limits shared by all workers of a KB, counted by the scripted server per time window."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from extractor.cli.main import main
from extractor.core.settings import Settings
from extractor.llm.ratelimit import LIMITS_FILE, SharedLimits, estimated_tokens
from tests.drafts import NULL
from tests.fakeopenai import FakeOpenAI, Reply, answer, error
from tests.kbfactory import make_inbox_kb

FAST = "retry_initial_wait = 0.01\nretry_max_wait = 5\nmax_per_cycle = 50\n"


def most_in_window(times: list[float], seconds: float) -> int:
    return max(sum(1 for t in times if start <= t < start + seconds) for start in times)


@pytest.fixture
def endpoint(fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAI:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    fake_llm.default = answer(NULL)
    return fake_llm


def test_workers_share_one_requests_per_minute_limit(tmp_path: Path, endpoint: FakeOpenAI) -> None:
    free = make_inbox_kb(tmp_path / "free", 12, FAST + "workers = 4\n")
    assert main(["run", "--once", "--kb", str(free)]) == 0
    unlimited = most_in_window(endpoint.request_times, 1.0)

    endpoint.request_times.clear()
    limited = make_inbox_kb(tmp_path / "limited", 12, FAST + "workers = 4\nrequests_per_minute = 120\n")
    assert main(["run", "--once", "--kb", str(limited)]) == 0
    times = endpoint.request_times
    span = times[-1] - times[0]
    print(f"\n4 workers, 12 requests: {unlimited} in the busiest second unlimited; "
          f"limited to 120/min: {most_in_window(times, 0.95)} in the busiest 0.95 s, {span:.1f} s in all")  # fmt: skip
    assert len(times) == 12 and unlimited > 2
    # 2 a second: 12 requests need 5 seconds or more. Arrival times jitter (by more on a busy machine) around
    # the moments the limiter let each request go, so short windows get some slack: never 3 within half a second,
    # never more than 6 within two and a half seconds.
    assert most_in_window(times, 0.5) <= 2 and most_in_window(times, 2.5) <= 6 and span >= 5.0


def test_a_429_pauses_every_worker_not_only_the_one_that_got_it(tmp_path: Path, endpoint: FakeOpenAI) -> None:
    endpoint.push(error(429, "slow down", {"retry-after": "2"}))
    endpoint.default = Reply(body=answer(NULL).body, delay=0.2)
    kb = make_inbox_kb(tmp_path / "kb", 9, FAST + "workers = 3\n")
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    times = endpoint.request_times
    refused = times[0]
    during = [t - refused for t in times[1:] if refused + 0.3 < t < refused + 1.9]
    print(f"\nrequests in the 2 s after the 429, besides those already sent: {len(during)}; {len(times)} in all")
    assert len(times) == 10 and during == []


def test_tokens_per_minute_count_the_prompt_and_max_tokens(tmp_path: Path) -> None:
    messages = [{"role": "user", "content": "x" * 4000}]
    assert estimated_tokens(messages, 500) >= 1500
    limits = SharedLimits(tmp_path, Settings(base_url="http://127.0.0.1:9/v1", tokens_per_minute=3000))
    other_process = SharedLimits(tmp_path, Settings(base_url="http://127.0.0.1:9/v1", tokens_per_minute=3000))
    assert limits.wait(2000) < 0.5
    assert limits.tokens is not None and other_process.tokens is not None
    # The minute's budget is shared: another process gets the 1,000 tokens left, not 2,000.
    assert not other_process.tokens.try_acquire(limits.endpoint, 2000, timeout=0.5)
    assert other_process.tokens.try_acquire(limits.endpoint, 1000, timeout=0.5)


def test_a_pause_is_seen_by_every_process_of_the_kb(tmp_path: Path) -> None:
    settings = Settings(base_url="http://127.0.0.1:9/v1")
    first, second = SharedLimits(tmp_path, settings), SharedLimits(tmp_path, settings)
    first.pause(0.6)
    started = time.monotonic()
    second.wait(10)
    assert time.monotonic() - started >= 0.5
    elsewhere = SharedLimits(tmp_path, Settings(base_url="http://127.0.0.1:10/v1"))
    assert elsewhere.paused_until() == 0.0  # limits are per endpoint


@pytest.mark.parametrize("per_minute", [1, 59, 60, 61, 120, 10_000])
def test_any_requests_per_minute_makes_a_limiter_that_lets_one_through(tmp_path: Path, per_minute: int) -> None:
    limits = SharedLimits(tmp_path, Settings(base_url="http://127.0.0.1:9/v1", requests_per_minute=per_minute))
    assert limits.wait(10) < 0.5


def test_each_endpoint_has_a_request_budget_of_its_own(tmp_path: Path) -> None:
    one = SharedLimits(tmp_path, Settings(base_url="http://127.0.0.1:9/v1", requests_per_minute=1))
    other = SharedLimits(tmp_path, Settings(base_url="http://127.0.0.1:10/v1", requests_per_minute=1))
    assert one.requests is not None and other.requests is not None
    assert one.requests.try_acquire(one.endpoint, 1, timeout=0.5)
    assert not one.requests.try_acquire(one.endpoint, 1, timeout=0.5)  # its minute's one request is spent
    assert other.requests.try_acquire(other.endpoint, 1, timeout=0.5)  # the other endpoint's is not


def test_429s_in_a_row_widen_the_spacing_every_process_keeps(tmp_path: Path) -> None:
    settings = Settings(base_url="http://127.0.0.1:9/v1", requests_per_minute=600)
    first, second = SharedLimits(tmp_path, settings), SharedLimits(tmp_path, settings)
    assert first.spacing() == 0.0
    first.pause(0.0)
    assert second.spacing() == pytest.approx(0.2)  # twice the configured gap of 0.1 s
    second.pause(0.0)
    assert first.spacing() == pytest.approx(0.4)
    started = time.monotonic()
    for _ in range(4):
        (first if _ % 2 else second).wait(10)
    # Four requests from two processes, 0.4 s apart (the first goes at once).
    assert time.monotonic() - started >= 1.1
    off = SharedLimits(tmp_path, Settings(base_url="http://127.0.0.1:11/v1", slow_down_seconds=0))
    off.pause(0.0)
    assert off.spacing() == 0.0


def test_after_a_429_every_worker_goes_slower_for_a_while(tmp_path: Path, endpoint: FakeOpenAI) -> None:
    endpoint.push(error(429, "slow down", {"retry-after": "1"}))
    kb = make_inbox_kb(tmp_path / "kb", 7, FAST + "workers = 3\n")
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    times = endpoint.request_times
    # The other workers' first requests went out with the refused one; the rest waited out the 1 s pause.
    after = [t for t in times if t > times[0] + 0.5]
    gaps = [b - a for a, b in zip(after, after[1:], strict=False)]
    print(f"\nafter a 429: {len(after)} requests, gaps {', '.join(f'{g:.2f}' for g in gaps)} s")
    # Unslowed, three workers send three requests within a few milliseconds; slowed, one a second between them.
    assert len(times) == 8 and len(after) >= 4 and min(gaps) >= 0.8


# --- the same limits in Postgres (state_url) ---------------------------------------------------------------


def _draw(kb: str, url: str, count: int, start: Any, times: Any) -> None:
    limits = SharedLimits(Path(kb), Settings(base_url="http://127.0.0.1:9/v1", requests_per_minute=120, state_url=url))
    start.wait()
    for _ in range(count):
        limits.wait(10)
        times.put(time.time())
    limits.close()


def test_processes_on_one_postgres_database_share_one_requests_per_minute_limit(
    tmp_path: Path, postgres_url: str
) -> None:
    """Two processes (machines, as far as the database knows) drawing from one budget of 120 a minute: together
    they keep to 2 a second, as the workers of one KB do with the SQLite file."""
    context = mp.get_context("spawn")
    start, times = context.Event(), context.Queue()
    processes = [context.Process(target=_draw, args=(str(tmp_path / f"kb{n}"), postgres_url, 6, start, times))
                 for n in range(2)]  # fmt: skip
    for process in processes:
        process.start()
    start.set()
    sent = sorted(times.get(timeout=60) for _ in range(12))
    for process in processes:
        process.join(timeout=60)
    assert [p.exitcode for p in processes] == [0, 0]
    span = sent[-1] - sent[0]
    print(f"\n2 processes, 12 requests limited to 120/min in Postgres: {most_in_window(sent, 0.95)} in the busiest "
          f"0.95 s, {span:.1f} s in all")  # fmt: skip
    assert most_in_window(sent, 0.5) <= 2 and most_in_window(sent, 2.5) <= 6 and span >= 5.0
    assert not (tmp_path / "kb0" / ".extractor" / LIMITS_FILE).exists()


@pytest.fixture
def postgres_limits(tmp_path: Path, postgres_url: str) -> Iterator[Callable[..., SharedLimits]]:
    """Makes the limits of the endpoint on a port of 127.0.0.1, kept in Postgres; all closed at the end."""
    made: list[SharedLimits] = []

    def limits(port: int, **values: Any) -> SharedLimits:
        settings = Settings(base_url=f"http://127.0.0.1:{port}/v1", state_url=postgres_url, **values)
        made.append(SharedLimits(tmp_path, settings))
        return made[-1]

    yield limits
    for each in made:
        each.close()


def test_postgres_limits_share_tokens_pauses_and_slow_downs(postgres_limits: Callable[..., SharedLimits]) -> None:
    limits = postgres_limits

    tokens, other_process = limits(9, tokens_per_minute=3000), limits(9, tokens_per_minute=3000)
    assert tokens.wait(2000) < 0.5
    assert other_process.tokens is not None
    assert not other_process.tokens.try_acquire(tokens.endpoint, 2000, timeout=0.5)  # 1,000 are left
    assert other_process.tokens.try_acquire(tokens.endpoint, 1000, timeout=0.5)

    first, second = limits(10, requests_per_minute=600), limits(10, requests_per_minute=600)
    assert first.spacing() == 0.0 and first.paused_until() == 0.0
    first.pause(0.6)
    assert second.paused_until() == pytest.approx(time.time() + 0.6, abs=0.2)
    started = time.monotonic()
    second.wait(10)
    assert time.monotonic() - started >= 0.5
    assert second.spacing() == pytest.approx(0.2)
    second.pause(0.0)
    assert first.spacing() == pytest.approx(0.4)  # a 429 in a row widens it, for every process
    assert limits(11).paused_until() == 0.0  # limits are per endpoint

    one, elsewhere = limits(12, requests_per_minute=1), limits(13, requests_per_minute=1)
    assert one.requests is not None and elsewhere.requests is not None
    assert one.requests.try_acquire(one.endpoint, 1, timeout=0.5)
    assert not one.requests.try_acquire(one.endpoint, 1, timeout=0.5)
    assert elsewhere.requests.try_acquire(elsewhere.endpoint, 1, timeout=0.5)
