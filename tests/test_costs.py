"""Spending: prices and costs, and the response cache that never pays twice for one answer."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from extractor.cli.main import main
from extractor.core.prices import DEFAULT_PRICES, ModelPrice, price_for, usage_cost
from extractor.core.settings import Settings
from extractor.extraction.answer import ExtractionAnswer
from extractor.llm.client import StructuredClient, make_client
from extractor.store.state import StateStore
from tests.conftest import git
from tests.drafts import NULL
from tests.fakeopenai import FakeOpenAI, answer, completion, error
from tests.kbfactory import make_inbox_kb

SOURCE = "inbox/archive/2026-01-00-source-00.md"
FAST = 'retry_initial_wait = 0.01\nretry_max_wait = 0.05\nmax_reasks = 1\nmodel = "gpt-4o-mini"\n'


def test_prices_come_from_settings_then_defaults_and_a_snapshot_takes_its_familys() -> None:
    mine = {"my-model": ModelPrice(input=1, output=2)}
    assert price_for("my-model", mine) == ModelPrice(input=1, output=2)
    assert price_for("gpt-4o-mini", {}) == DEFAULT_PRICES["gpt-4o-mini"]
    assert price_for("gpt-4o-mini-2024-07-18", {}) == DEFAULT_PRICES["gpt-4o-mini"]
    assert price_for("gpt-4o-2024-08-06", {}) == DEFAULT_PRICES["gpt-4o"]
    assert price_for("some-unknown-model", {}) is None
    assert price_for("some-unknown-model", {}, embedded=True) == ModelPrice(input=0, output=0, cached_input=0)


def test_cost_counts_cached_prompt_tokens_at_the_cached_price() -> None:
    price = ModelPrice(input=2.0, output=8.0, cached_input=0.5)
    assert usage_cost(price, 1_000_000, 0) == pytest.approx(2.0)
    assert usage_cost(price, 1_000_000, 500_000, cached_tokens=400_000) == pytest.approx(1.2 + 0.2 + 4.0)
    assert usage_cost(ModelPrice(input=2.0, output=8.0), 1000, 0, cached_tokens=1000) == pytest.approx(0.002)
    assert usage_cost(None, 1000, 1000) is None


def test_the_client_prices_each_call_from_the_usage_the_api_returns(fake_llm: FakeOpenAI) -> None:
    reply = answer(NULL, prompt_tokens=10_000, completion_tokens=2_000)
    reply.body["usage"]["prompt_tokens_details"] = {"cached_tokens": 4_000}
    fake_llm.push(reply)
    settings = Settings(base_url=fake_llm.base_url, model="gpt-4o-mini")
    result = StructuredClient(make_client(settings), settings).ask([{"role": "user", "content": "x"}], ExtractionAnswer)
    expected = (6_000 * 0.15 + 4_000 * 0.075 + 2_000 * 0.60) / 1_000_000
    assert result.usage.cost == pytest.approx(expected) and result.usage.cached_tokens == 4_000
    assert result.calls[0].cost == pytest.approx(expected) and result.calls[0].cached_tokens == 4_000


@pytest.fixture
def kb(tmp_path: Path, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    return make_inbox_kb(tmp_path / "kb", 3, FAST + "max_per_cycle = 10\nworkers = 2\n")


def branch_tree(kb: Path, source: str = SOURCE) -> str:
    return git(kb, "rev-parse", f"extract/{Path(source).stem}^{{tree}}").strip()


def drop_branches(kb: Path) -> None:
    for branch in git(kb, "for-each-ref", "--format=%(refname:short)", "refs/heads/extract/").split():
        git(kb, "branch", "-D", branch)


def test_extracting_an_unchanged_source_again_makes_no_call(kb: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.default = answer(NULL, prompt_tokens=1000, completion_tokens=100)
    assert main(["extract", str(kb / SOURCE)]) == 0
    first, asked = branch_tree(kb), len(fake_llm.requests)
    drop_branches(kb)  # rejected: the source is due again, unchanged
    assert main(["extract", str(kb / SOURCE)]) == 0
    assert len(fake_llm.requests) == asked == 1 and branch_tree(kb) == first

    drop_branches(kb)
    assert main(["extract", str(kb / SOURCE), "--no-cache"]) == 0
    assert len(fake_llm.requests) == 2
    calls = StateStore.open(kb).calls_for(SOURCE)
    assert [c["outcome"] for c in calls] == ["ok", "cached", "ok"]
    assert calls[1]["cost"] == 0 and calls[0]["cost"] == pytest.approx((1000 * 0.15 + 100 * 0.6) / 1e6)


def test_a_changed_setting_or_prompt_misses_the_cache(kb: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.default = answer(NULL)
    assert main(["extract", str(kb / SOURCE)]) == 0
    drop_branches(kb)
    (kb / "extractor.toml").write_text(FAST + "temperature = 0.7\n", encoding="utf-8")
    assert main(["extract", str(kb / SOURCE)]) == 0
    assert len(fake_llm.requests) == 2


def test_failures_are_never_cached(kb: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.push(completion("not json"), completion("still not json"))
    assert main(["extract", str(kb / SOURCE)]) == 1
    fake_llm.push(answer(NULL))
    assert main(["extract", str(kb / SOURCE)]) == 0
    assert len(fake_llm.requests) == 3
    db = sqlite3.connect(kb / ".extractor" / "state.db")
    assert db.execute("SELECT count(*) FROM response_cache").fetchone()[0] == 1


def test_a_run_over_unchanged_sources_again_makes_zero_calls(kb: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.default = answer(NULL)
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    trees = {s: branch_tree(kb, s) for s in StateStore.open(kb).all_sources()}
    assert len(fake_llm.requests) == 3
    drop_branches(kb)
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    assert len(fake_llm.requests) == 3 and {s: branch_tree(kb, s) for s in trees} == trees
    drop_branches(kb)
    assert main(["run", "--once", "--kb", str(kb), "--no-cache"]) == 0
    assert len(fake_llm.requests) == 6


def per_source_cost(prompt: int, completion: int) -> float:
    return (prompt * 0.15 + completion * 0.60) / 1e6  # gpt-4o-mini


def test_costs_reports_tokens_and_cost_by_day_model_agent_and_source(
    kb: Path, fake_llm: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_llm.default = answer(NULL, prompt_tokens=1000, completion_tokens=100)
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    drop_branches(kb)
    assert main(["run", "--once", "--kb", str(kb)]) == 0  # all three from the cache
    capsys.readouterr()
    assert main(["costs", "--kb", str(kb), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    each = per_source_cost(1000, 100)
    assert report["total"]["calls"] == 6 and report["total"]["cache_hits"] == 3
    assert report["total"]["cost"] == pytest.approx(3 * each)
    assert [(r["model"], r["calls"]) for r in report["model"]] == [("gpt-4o-mini", 6)]
    assert [(r["agent"], r["cost"]) for r in report["agent"]] == [("theseus", pytest.approx(3 * each))]
    assert len(report["source"]) == 3 and all(r["cost"] == pytest.approx(each) for r in report["source"])
    assert len(report["day"]) == 1 and report["day"][0]["prompt_tokens"] == 3000
    assert main(["costs", "--kb", str(kb), "--by", "agent"]) == 0
    text = capsys.readouterr().out
    assert "6 call(s) (3 from the cache)" in text and "by agent:" in text and "theseus" in text
    assert "by model:" not in text


def test_budgets_stop_new_sources_and_say_so(
    tmp_path: Path, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    kb = make_inbox_kb(tmp_path / "kb", 6, FAST + "max_per_cycle = 10\nworkers = 1\nbudget_per_cycle = 0.5\n")
    fake_llm.default = answer(NULL, prompt_tokens=1_000_000, completion_tokens=100_000)  # $0.21 a source
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(fake_llm.requests) == 2  # a third would pass $0.50: $0.42 spent plus about $0.21
    budget = next(line for line in lines if line["message"] == "budget reached")
    assert "cycle budget $0.50 reached" in budget["why"] and budget["requeued"] == 4
    assert main(["status", "--kb", str(kb), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["counts"] == {"awaiting_review": 2, "due": 4}
    assert status["spending"]["today"] == pytest.approx(0.42)
    assert "cycle budget" in status["spending"]["stopped_by_budget"]

    (kb / "extractor.toml").write_text(FAST + "max_per_cycle = 10\nworkers = 1\nbudget_per_day = 0.5\n")
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    assert len(fake_llm.requests) == 2  # today's $0.42 leaves no room for another source
    capsys.readouterr()
    assert main(["status", "--kb", str(kb)]) == 0
    text = capsys.readouterr().out
    assert "spent today: $0.4200 of a $0.50 daily budget" in text and "daily budget $0.50 reached" in text


def test_a_budget_over_a_model_with_no_known_price_refuses_to_start(
    tmp_path: Path, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    config = FAST.replace("gpt-4o-mini", "house-model") + "budget_per_day = 1.0\n"
    kb = make_inbox_kb(tmp_path / "kb", 2, config)
    assert main(["run", "--once", "--kb", str(kb)]) == 2
    assert "'house-model' has no known price" in capsys.readouterr().err
    assert main(["batch", "submit", "--kb", str(kb)]) == 2
    assert fake_llm.requests == []
    (kb / "extractor.toml").write_text(config + "[prices]\nhouse-model = { input = 1.0, output = 2.0 }\n")
    fake_llm.default = answer(NULL)
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    assert len(fake_llm.requests) == 2


def test_a_request_that_failed_without_usage_is_free_not_unpriced(kb: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.push(error(500, "try again"))
    fake_llm.default = answer(NULL, prompt_tokens=1_000, completion_tokens=100)
    assert main(["run", "--once", "--kb", str(kb)]) == 0
    store = StateStore.open(kb)
    try:
        [total] = store.cost_report("model")
        failed = store.db.execute("SELECT cost FROM llm_calls WHERE outcome != 'ok'").fetchall()
    finally:
        store.close()
    assert total["unpriced_calls"] == 0 and total["calls"] == 4
    assert [row[0] for row in failed] == [0.0]
