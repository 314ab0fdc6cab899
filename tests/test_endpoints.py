"""Several endpoints of one model: requests spread by weight and load, a failing endpoint set aside, and the
call log and costs naming each."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from extractor.cli.main import main
from extractor.core.redact import register_settings, scrub
from extractor.core.settings import Settings
from extractor.llm.pool import Endpoint, EndpointPool
from extractor.store.state import SourceState, StateStore
from tests.drafts import grounded_answer, source_body
from tests.fakeopenai import FakeOpenAI, Reply, answer, error
from tests.kbfactory import make_inbox_kb

BODY = (
    "Researchers found that small teams with shared goals can coordinate faster than large hierarchies. "
    "The study shows that coordination costs grow with the number of layers in an organisation.\n"
)


def pool_of(*weights: float, failures: int = 2, cooldown: float = 10.0) -> tuple[EndpointPool, list[float]]:
    clock = [0.0]
    endpoints = [Endpoint(name=f"e{n}", settings=Settings(), weight=w) for n, w in enumerate(weights)]
    return EndpointPool(endpoints, failures, cooldown, clock=lambda: clock[0]), clock


def test_requests_one_at_a_time_are_shared_out_by_weight() -> None:
    pool, _ = pool_of(3.0, 1.0)
    chosen = []
    for _ in range(8):
        endpoint = pool.acquire()
        chosen.append(endpoint.name)
        pool.release(endpoint, failed=False)
    assert chosen.count("e0") == 6 and chosen.count("e1") == 2


def test_requests_at_once_go_to_the_least_busy() -> None:
    pool, _ = pool_of(1.0, 1.0)
    first, second = pool.acquire(), pool.acquire()
    assert {first.name, second.name} == {"e0", "e1"}  # the second does not queue behind the first
    pool.release(first, failed=False)
    assert pool.acquire() is first


def test_a_failing_endpoint_is_set_aside_for_the_cooldown_then_tried_again() -> None:
    pool, clock = pool_of(1.0, 1.0, failures=2, cooldown=10.0)
    bad, good = pool.endpoints
    pool.release(bad, failed=True)
    bad.outstanding = 1  # (released once above without acquiring)
    assert pool.acquire() is good  # one failure: the healthy one is preferred
    pool.release(good, failed=False)
    pool.release(bad, failed=True)  # two in a row: set aside
    assert all(pool.acquire() is good for _ in range(5))
    clock[0] = 10.5
    assert pool.acquire() is bad  # back after the cooldown: one request tries it
    assert pool.acquire() is good  # while that one is out, the others go elsewhere
    pool.release(bad, failed=True)
    assert bad.aside_until == pytest.approx(20.5)  # the try failed: aside again at once
    clock[0] = 21.0
    assert pool.acquire() is bad
    pool.release(bad, failed=False)  # the try worked: it takes its share again
    assert bad.failures == 0 and bad.aside_until == 0.0
    good.outstanding = 0
    assert {pool.acquire().name, pool.acquire().name} == {"e0", "e1"}


def test_all_set_aside_uses_the_one_back_soonest() -> None:
    pool, clock = pool_of(1.0, 1.0, failures=1, cooldown=10.0)
    first, second = pool.endpoints
    first.outstanding = second.outstanding = 1
    pool.release(first, failed=True)
    clock[0] = 1.0
    pool.release(second, failed=True)
    assert pool.acquire() is first


def test_an_endpoint_setting_is_checked_and_its_key_redacted() -> None:
    with pytest.raises(ValueError, match="endpoints.0.weight"):
        Settings(endpoints=[{"base_url": "http://127.0.0.1:9/v1", "weight": 0}])
    with pytest.raises(ValueError, match="endpoints.0.base_url"):
        Settings(endpoints=[{"base_url": "ftp://127.0.0.1/v1"}])
    settings = Settings(
        endpoints=[{"base_url": "http://user:hunter2-secret@127.0.0.1:9/v1", "api_key": "sk-endpoint-key"}]
    )
    assert settings.has_endpoint and settings.base_url is None
    register_settings(settings)
    assert "sk-endpoint-key" not in scrub("key sk-endpoint-key") and "hunter2-secret" not in scrub("hunter2-secret")


@pytest.fixture
def two_endpoints() -> Iterator[tuple[FakeOpenAI, FakeOpenAI]]:
    first, second = FakeOpenAI().start(), FakeOpenAI().start()
    yield first, second
    first.stop()
    second.stop()


def test_when_one_endpoint_starts_failing_its_requests_move_to_the_other_and_nothing_is_lost(
    tmp_path: Path,
    two_endpoints: tuple[FakeOpenAI, FakeOpenAI],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    failing, healthy = two_endpoints
    lock = threading.Lock()
    served = [0]

    def good(request: dict[str, object]) -> Reply:
        return answer(grounded_answer(source_body(request)))

    def breaks_after_two(request: dict[str, object]) -> Reply:
        with lock:
            served[0] += 1
            return good(request) if served[0] <= 2 else error(500, "the GPU fell over")

    failing.responder, healthy.responder = breaks_after_two, good
    monkeypatch.setenv(
        "EXTRACTOR_ENDPOINTS",
        json.dumps([{"base_url": failing.base_url, "model": "big"}, {"base_url": healthy.base_url, "model": "big"}]),
    )
    monkeypatch.setenv("EXTRACTOR_RETRY_INITIAL_WAIT", "0.01")
    monkeypatch.setenv("EXTRACTOR_ENDPOINT_COOLDOWN", "300")
    kb = make_inbox_kb(tmp_path / "kb", 8, settings='commit_mode = "main"\nmax_per_cycle = 8\n',
                       body=lambda n: f"Source {n}. {BODY}")  # fmt: skip
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    store = StateStore.open(kb)
    try:
        rows = store.all_sources()
        calls = store.db.execute("SELECT endpoint, outcome FROM llm_calls").fetchall()
    finally:
        store.close()
    assert len(rows) == 8 and all(row.state is SourceState.DONE for row in rows.values()), rows
    failing_name = f"127.0.0.1:{failing.httpd.server_address[1]}/v1 big"
    healthy_name = f"127.0.0.1:{healthy.httpd.server_address[1]}/v1 big"
    by_endpoint: dict[str, list[str]] = {}
    for endpoint, outcome in calls:
        by_endpoint.setdefault(endpoint, []).append(outcome)
    assert set(by_endpoint) == {failing_name, healthy_name}, by_endpoint
    errors = by_endpoint[failing_name].count("error")
    assert by_endpoint[failing_name].count("ok") == 2 and 1 <= errors <= 3, by_endpoint  # then its work moved
    assert len(failing.requests) == 2 + errors and len(healthy.requests) == len(by_endpoint[healthy_name])
    assert len(healthy.requests) >= 6  # the rest of the sources: one request each
    capsys.readouterr()
    assert main(["costs", "--kb", str(kb), "--by", "endpoint", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {row["endpoint"] for row in report["endpoint"]} == {failing_name, healthy_name}
