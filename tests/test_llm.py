"""The LLM client against a scripted OpenAI-compatible server: real HTTP, real SDK."""

from __future__ import annotations

import json
import time

import pytest

from extractor.core.settings import Settings, StructuredMode
from extractor.extraction.answer import ExtractionAnswer
from extractor.llm.client import LLMError, StructuredClient, make_client, retry_after_seconds
from tests.fakeopenai import FakeOpenAI, Reply, answer, completion, error

GOOD = {
    "key_facts": ["The trilemma has three properties."],
    "claims": [
        {
            "evidence": ["No RLHF system can simultaneously achieve all three properties."],
            "argument": "The paper proves it with complexity theory.",
            "limitations": ["Workshop paper."],
            "title": "No RLHF system can be representative, tractable and robust at once",
            "description": "A complexity-theoretic impossibility result for preference learning.",
            "confidence": "likely",
            "secondary_domains": [],
            "related": [],
        }
    ],
    "enrichments": [],
    "null_result_reason": None,
    "notes": "One claim.",
}
MESSAGES = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]


def client_for(server: FakeOpenAI, **overrides: object) -> StructuredClient:
    values: dict[str, object] = {
        "base_url": server.base_url,
        "model": "scripted-model",
        "timeout": 1.0,
        "max_attempts": 4,
        "retry_initial_wait": 0.01,
        "retry_max_wait": 2.0,
        **overrides,
    }
    settings = Settings(**values)
    return StructuredClient(make_client(settings), settings)


def test_a_good_answer_is_parsed_with_usage(fake_llm: FakeOpenAI) -> None:
    fake_llm.push(answer(GOOD, prompt_tokens=120, completion_tokens=30))
    reply = client_for(fake_llm).ask(MESSAGES, ExtractionAnswer)
    assert reply.value.claims[0].title.startswith("No RLHF system")
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (120, 30)
    assert (reply.attempts, reply.retries, reply.reasks) == (1, 0, 0)
    sent = fake_llm.requests[0]
    assert sent["model"] == "scripted-model"
    assert sent["messages"] == MESSAGES
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["strict"] is True


def test_invalid_json_is_reasked_with_the_error(fake_llm: FakeOpenAI) -> None:
    fake_llm.push(completion('{"claims": [oops'), answer(GOOD))
    reply = client_for(fake_llm).ask(MESSAGES, ExtractionAnswer)
    assert reply.reasks == 1 and reply.attempts == 2
    second = fake_llm.requests[1]["messages"]
    assert second[:2] == MESSAGES
    assert second[2] == {"role": "assistant", "content": '{"claims": [oops'}
    assert "not valid JSON" in second[3]["content"]
    assert reply.usage.prompt_tokens == 200  # both calls counted


def test_schema_invalid_json_is_reasked_naming_the_field(fake_llm: FakeOpenAI) -> None:
    bad = json.loads(json.dumps(GOOD))
    bad["claims"][0]["confidence"] = "certain"
    bad["claims"][0]["evidence"] = []
    fake_llm.push(answer(bad), answer(GOOD))
    reply = client_for(fake_llm).ask(MESSAGES, ExtractionAnswer)
    assert reply.reasks == 1
    feedback = fake_llm.requests[1]["messages"][-1]["content"]
    assert "claims.0.confidence" in feedback and "claims.0.evidence" in feedback


def test_reasks_stop_after_two(fake_llm: FakeOpenAI) -> None:
    fake_llm.push(completion("nope"), completion("still no"), completion("never"), answer(GOOD))
    with pytest.raises(LLMError) as caught:
        client_for(fake_llm).ask(MESSAGES, ExtractionAnswer)
    assert caught.value.kind == "invalid"
    assert len(fake_llm.requests) == 3
    assert caught.value.usage.requests == 3


def test_raw_control_characters_in_strings_are_accepted(fake_llm: FakeOpenAI) -> None:
    raw = json.dumps(GOOD).replace("The paper proves", "The paper\tproves\\n").replace("\\n", "\n")
    fake_llm.push(completion("```json\n" + raw + "\n```"))
    reply = client_for(fake_llm).ask(MESSAGES, ExtractionAnswer)
    assert reply.reasks == 0
    assert "proves" in reply.value.claims[0].argument


def test_429_honours_retry_after(fake_llm: FakeOpenAI) -> None:
    fake_llm.push(error(429, "slow down", {"retry-after": "1"}), answer(GOOD))
    reply = client_for(fake_llm).ask(MESSAGES, ExtractionAnswer)
    gap = fake_llm.request_times[1] - fake_llm.request_times[0]
    assert gap >= 0.95
    assert (reply.retries, reply.attempts, reply.reasks) == (1, 2, 0)


def test_5xx_and_timeouts_are_retried_then_succeed(fake_llm: FakeOpenAI) -> None:
    fake_llm.push(error(500), error(503), Reply(delay=1.5, body={}), answer(GOOD))
    reply = client_for(fake_llm).ask(MESSAGES, ExtractionAnswer)
    assert reply.retries == 3
    assert len(fake_llm.requests) == 4  # the SDK's own retries are off


def test_transient_failures_stop_at_max_attempts(fake_llm: FakeOpenAI) -> None:
    fake_llm.push(*[error(502)] * 10)
    with pytest.raises(LLMError) as caught:
        client_for(fake_llm, max_attempts=3).ask(MESSAGES, ExtractionAnswer)
    assert caught.value.kind == "transient"
    assert "HTTP 502" in str(caught.value)
    assert len(fake_llm.requests) == 3


def test_client_errors_are_not_retried(fake_llm: FakeOpenAI) -> None:
    fake_llm.push(error(400, "bad request"), answer(GOOD))
    with pytest.raises(LLMError) as caught:
        client_for(fake_llm).ask(MESSAGES, ExtractionAnswer)
    assert caught.value.kind == "request"
    assert len(fake_llm.requests) == 1


def test_finish_reason_length_is_its_own_error(fake_llm: FakeOpenAI) -> None:
    fake_llm.push(completion('{"claims": [', finish_reason="length"), answer(GOOD))
    with pytest.raises(LLMError) as caught:
        client_for(fake_llm).ask(MESSAGES, ExtractionAnswer)
    assert caught.value.kind == "length"
    assert len(fake_llm.requests) == 1


def test_empty_choices_are_retried(fake_llm: FakeOpenAI) -> None:
    empty = completion("x")
    empty.body["choices"] = []
    fake_llm.push(empty, answer(GOOD))
    reply = client_for(fake_llm).ask(MESSAGES, ExtractionAnswer)
    assert reply.retries == 1


@pytest.mark.parametrize(
    ("mode", "expected_type", "schema_key"),
    [
        (StructuredMode.JSON_SCHEMA, "json_schema", "json_schema"),
        (StructuredMode.JSON_OBJECT_SCHEMA, "json_object", "schema"),
        (StructuredMode.PROMPT, "json_object", None),
    ],
)
def test_each_mode_sends_its_response_format(
    fake_llm: FakeOpenAI, mode: StructuredMode, expected_type: str, schema_key: str | None
) -> None:
    fake_llm.push(answer(GOOD))
    client_for(fake_llm, structured_mode=mode).ask(MESSAGES, ExtractionAnswer)
    fmt = fake_llm.requests[0]["response_format"]
    assert fmt["type"] == expected_type
    if schema_key:
        assert schema_key in fmt
    else:
        assert set(fmt) == {"type"}


def test_retry_after_parsing() -> None:
    class Response:
        def __init__(self, headers: dict[str, str]) -> None:
            self.headers = headers

    class HeaderError(Exception):
        def __init__(self, headers: dict[str, str]) -> None:
            self.response = Response(headers)

    assert retry_after_seconds(HeaderError({"retry-after": "7"})) == 7
    assert retry_after_seconds(HeaderError({"retry-after-ms": "250"})) == 0.25
    now = time.time()
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now + 30))
    assert 28 <= retry_after_seconds(HeaderError({"retry-after": date}), now=now) <= 31
    assert retry_after_seconds(HeaderError({})) is None
