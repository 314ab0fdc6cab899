"""Structured answers from any OpenAI-compatible endpoint through the openai SDK.

Two kinds of failure are kept apart: transport failures (429, 5xx, timeouts,
dropped connections) are retried by tenacity with backoff; an answer that is
not valid JSON or breaks the schema is re-asked with the error fed back. The
SDK's own retries are off so attempts never multiply.
"""

from __future__ import annotations

import email.utils
import functools
import hashlib
import json
import re
import time
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

import openai
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, Field, ValidationError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)
from tenacity.wait import wait_base

from extractor.core.errors import ExtractorError
from extractor.core.prices import price_for, usage_cost
from extractor.core.records import CallRecord, Usage, cached_tokens, token_count
from extractor.core.redact import scrub
from extractor.core.settings import Settings, StructuredMode
from extractor.llm.contextsize import fits
from extractor.llm.pool import Endpoint, EndpointPool
from extractor.llm.ratelimit import estimated_tokens

T = TypeVar("T", bound=BaseModel)
SCHEMA_NAME = "extraction_answer"
_TRANSIENT_STATUS = {408, 409, 429}


class LLMError(ExtractorError):
    """The endpoint gave no usable answer; ``kind`` says why."""

    def __init__(
        self, kind: str, message: str, usage: Usage | None = None, calls: list[CallRecord] | None = None
    ) -> None:
        self.kind = kind
        self.usage = usage or Usage()
        self.calls = calls or []
        super().__init__(f"{kind}: {' '.join(message.split())}")


class EmptyReplyError(Exception):
    """A 200 response without choices: treated like any transient failure."""


class StructuredReply(BaseModel, Generic[T]):
    value: T
    usage: Usage
    attempts: int = Field(description="HTTP requests made, retries and re-asks included")
    retries: int
    reasks: int
    raw_replies: list[str]
    salvaged: list[str] = Field(default_factory=list, description="what salvage dropped, when it was used")
    calls: list[CallRecord] = Field(default_factory=list)


def make_client(settings: Settings) -> openai.OpenAI:
    api_key = settings.api_key.get_secret_value() if settings.api_key else "not-needed"
    return openai.OpenAI(base_url=settings.base_url, api_key=api_key, max_retries=0, timeout=settings.timeout)


def response_format(mode: StructuredMode, model: type[BaseModel], max_tokens: int | None = None) -> dict[str, Any]:
    """What the request's ``response_format`` says for this mode; a fresh copy, since callers may change it.
    ``max_tokens``: a grammar-constrained endpoint's bounds are sized so the longest answer fits."""
    return json.loads(_response_format_json(mode, model, max_tokens))


@functools.lru_cache(maxsize=1024)  # the select strategy makes a model per window
def _response_format_json(mode: StructuredMode, model: type[BaseModel], max_tokens: int | None) -> str:
    """Building a model's JSON schema takes milliseconds, and every request (and its cache key) needs it."""
    return json.dumps(_build_response_format(mode, model, max_tokens))


def _build_response_format(mode: StructuredMode, model: type[BaseModel], max_tokens: int | None) -> dict[str, Any]:
    if mode is StructuredMode.JSON_SCHEMA:
        schema = without_titles(to_strict_json_schema(model))
        return {"type": "json_schema", "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": schema}}
    if mode is StructuredMode.JSON_OBJECT_SCHEMA:
        # Grammar-constrained servers get the bounded schema when the model offers one.
        bounded = getattr(model, "grammar_schema", None)
        schema = bounded(max_tokens) if bounded else model.model_json_schema()
        return {"type": "json_object", "schema": without_titles(schema)}
    return {"type": "json_object"}


def without_titles(schema: Any) -> Any:
    """A JSON schema without the ``title`` annotations pydantic adds to every object and property: they repeat
    the names, and every request pays for them in tokens. A property that is called "title" is kept."""
    if isinstance(schema, dict):
        return {
            key: without_titles(value)
            for key, value in schema.items()
            if not (key == "title" and isinstance(value, str))
        }
    if isinstance(schema, list):
        return [without_titles(item) for item in schema]
    return schema


def schema_for_prompt(mode: StructuredMode, model: type[BaseModel]) -> dict[str, Any] | None:
    """The schema to write into the prompt: only when the endpoint is not given it."""
    return without_titles(model.model_json_schema()) if mode is StructuredMode.PROMPT else None


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError, EmptyReplyError)):
        return True
    if isinstance(exc, openai.APIResponseValidationError):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in _TRANSIENT_STATUS or exc.status_code >= 500
    return False


def retry_after_seconds(exc: BaseException | None, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms`` or ``Retry-After``)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


class wait_retry_after_or(wait_base):  # noqa: N801 - tenacity's naming style
    """Honour the server's Retry-After, capped; otherwise fall back to backoff."""

    def __init__(self, fallback: wait_base, cap: float) -> None:
        self.fallback = fallback
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        asked = retry_after_seconds(outcome.exception() if outcome else None)
        if asked is not None:
            return min(asked, self.cap)
        return self.fallback(retry_state)


def _describe(exc: BaseException) -> str:
    """One line for an error; redacted, since a proxy may echo the Authorization header or the key."""
    if isinstance(exc, openai.APIStatusError):
        return scrub(f"HTTP {exc.status_code}: {exc.message}")
    if isinstance(exc, openai.APIConnectionError):  # timeouts too: the endpoint, and why it did not answer
        cause = exc.__cause__ or exc.__context__
        why = f" ({cause})" if cause is not None and str(cause) else ""
        return scrub(f"{type(exc).__name__}: {exc}: {exc.request.method} {exc.request.url}{why}")
    return scrub(f"{type(exc).__name__}: {exc}")


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def load_json(text: str) -> Any:
    """Lenient where it is safe: code fences and raw control characters in strings."""
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    return json.loads(text, strict=False)


def parse_reply(text: str, model: type[T]) -> T:
    return model.model_validate(load_json(text))


Salvage = Callable[[Any], "tuple[T, list[str]] | None"]


def reask_message(error: Exception) -> str:
    if isinstance(error, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'answer'}: {err['msg']}" for err in error.errors()[:10]
        )
    else:
        problems = f"not valid JSON ({error})"
    return f"Your reply could not be used: {problems}. Reply again with only the corrected JSON object."


CACHE_VERSION = 1  # bump when what a cached answer means changes


class AnswerCache(Protocol):
    def cached_answer(self, key: str) -> str | None: ...

    def cache_answer(
        self, key: str, model: str, content: str, prompt_tokens: int, completion_tokens: int, cost: float | None
    ) -> None: ...


class RequestGate(Protocol):
    """Shared rate limits: wait for a turn before each request; a 429 pauses everyone."""

    def wait(self, tokens: int) -> float: ...

    def pause(self, seconds: float | None) -> None: ...


def cache_key(settings: Settings, messages: list[dict[str, str]], fmt: dict[str, Any], shape: type[BaseModel]) -> str:
    """A hash of exactly what determines the answer: endpoint, model, messages, format, schema, sampling."""
    payload = {
        "version": CACHE_VERSION,
        "endpoint": settings.endpoint_id or settings.base_url or "",
        "model": settings.model,
        "messages": messages,
        "format": fmt,
        "schema": shape.model_json_schema(),
        "temperature": settings.temperature,
        "max_tokens": settings.max_tokens,
        # No seed: the key is what it was before seeds.
        **({"seed": settings.seed} if settings.seed is not None else {}),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def call_cost(settings: Settings, usage: Any | None) -> float | None:
    """Dollars for one call; a call that reported no usage (a refused or dropped request) billed nothing."""
    price = price_for(settings.model, settings.prices, embedded=settings.is_embedded)
    if usage is None:
        return None if price is None else 0.0
    prompt, completion = token_count(usage, "prompt_tokens"), token_count(usage, "completion_tokens")
    return usage_cost(price, prompt, completion, cached_tokens(usage))


class StructuredClient:
    """Asks one model for answers of one pydantic shape, with retries, re-asks and a response cache.

    With a ``cache``, a validated answer is kept under :func:`cache_key` of the
    first request; asking the same again returns it without a call. Failures
    and salvaged answers are never kept.
    """

    def __init__(
        self,
        client: openai.OpenAI,
        settings: Settings,
        cache: AnswerCache | None = None,
        limits: RequestGate | None = None,
        pool: EndpointPool | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.cache = cache if settings.cache else None
        self.limits = limits
        self.pool = pool  # several endpoints: each request goes to the least busy (client and limits unused)

    def _record(
        self,
        request_hash: str,
        started: float,
        outcome: str,
        error: str | None = None,
        usage: Any = None,
        endpoint: Endpoint | None = None,
    ) -> CallRecord:
        settings = endpoint.settings if endpoint is not None else self.settings
        return CallRecord(
            at=time.time(),
            model=settings.model,
            request_hash=request_hash,
            prompt_tokens=token_count(usage, "prompt_tokens"),
            completion_tokens=token_count(usage, "completion_tokens"),
            cached_tokens=cached_tokens(usage),
            cost=call_cost(settings, usage),
            latency=time.monotonic() - started,
            outcome=outcome,
            error=error,
            endpoint=endpoint.name if endpoint is not None else None,
        )

    def _from_cache(self, key: str, shape: type[T]) -> StructuredReply[T] | None:
        assert self.cache is not None
        content = self.cache.cached_answer(key)
        if content is None:
            return None
        try:
            value = parse_reply(content, shape)
        except (ValueError, ValidationError):
            return None  # kept under an older shape: ask again
        record = self._record(key[:16], time.monotonic(), "cached")
        record.cost, record.raw_reply = 0.0, content
        return StructuredReply[shape](  # type: ignore[valid-type]
            value=value, usage=Usage(cost=0.0), attempts=0, retries=0, reasks=0, raw_replies=[content], calls=[record]
        )

    def _retrying(self) -> Retrying:
        s = self.settings
        return Retrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(s.max_attempts),
            wait=wait_retry_after_or(
                wait_random_exponential(multiplier=s.retry_initial_wait, max=s.retry_max_wait),
                cap=s.retry_max_wait,
            ),
            reraise=True,
        )

    def ask(
        self, messages: list[dict[str, str]], model: type[T], salvage: Salvage[T] | None = None
    ) -> StructuredReply[T]:
        """The validated answer; ``salvage`` may rescue the last reply once re-asks are spent."""
        settings = self.settings
        fmt = response_format(settings.structured_mode, model, settings.max_tokens)
        key = cache_key(settings, messages, fmt, model) if self.cache is not None else None
        if key is not None and (hit := self._from_cache(key, model)) is not None:
            return hit
        conversation = list(messages)
        usage = Usage()
        calls: list[CallRecord] = []
        raw_replies: list[str] = []
        retries = 0

        def reply(value: T, reasks: int, salvaged: list[str] | None = None) -> StructuredReply[T]:
            return StructuredReply[model](  # type: ignore[valid-type]
                value=value,
                usage=usage,
                attempts=usage.requests,
                retries=retries,
                reasks=reasks,
                raw_replies=raw_replies,
                salvaged=salvaged or [],
                calls=calls,
            )

        def give_up(kind: str, message: str, cause: BaseException | None = None) -> LLMError:
            error = LLMError(kind, message, usage, calls)
            error.__cause__ = cause
            return error

        for reask in range(settings.max_reasks + 1):
            completion = None
            request_hash = hashlib.sha256(
                json.dumps([settings.model, conversation, fmt], sort_keys=True).encode()
            ).hexdigest()[:16]
            try:
                for attempt in self._retrying():
                    with attempt:
                        if attempt.retry_state.attempt_number > 1:
                            retries += 1
                        pool = self.pool
                        endpoint = pool.acquire() if pool is not None else None
                        client = endpoint.client if endpoint is not None else self.client
                        limits = endpoint.limits if endpoint is not None else self.limits
                        failed = False
                        try:
                            if limits is not None:
                                limits.wait(estimated_tokens(conversation, settings.max_tokens))
                            started = time.monotonic()
                            try:
                                completion = client.chat.completions.create(  # type: ignore[call-overload]
                                    model=endpoint.settings.model if endpoint is not None else settings.model,
                                    messages=conversation,
                                    response_format=fmt,
                                    temperature=settings.temperature,
                                    max_tokens=settings.max_tokens,
                                    **({"seed": settings.seed} if settings.seed is not None else {}),
                                )
                            except Exception as exc:
                                failed = is_transient(exc)
                                usage.requests += 1
                                calls.append(self._record(request_hash, started, "error", _describe(exc),
                                                          endpoint=endpoint))  # fmt: skip
                                if limits is not None and getattr(exc, "status_code", None) == 429:
                                    limits.pause(retry_after_seconds(exc))
                                raise
                        finally:
                            if pool is not None and endpoint is not None:
                                pool.release(endpoint, failed)
                        calls.append(self._record(request_hash, started, "ok", usage=completion.usage,
                                                  endpoint=endpoint))  # fmt: skip
                        usage.add(completion.usage, calls[-1].cost)
                        if not completion.choices:
                            calls[-1].outcome, calls[-1].error = "error", "reply had no choices"
                            raise EmptyReplyError("reply had no choices")
            except Exception as exc:  # noqa: BLE001 - classified below
                kind = "transient" if is_transient(exc) else "request"
                raise give_up(kind, f"{_describe(exc)} after {usage.requests} request(s)", exc) from exc

            assert completion is not None
            choice = completion.choices[0]
            message = choice.message
            content = message.content or ""
            raw_replies.append(content)
            calls[-1].raw_reply = content
            if choice.finish_reason == "length":
                calls[-1].outcome = "length"
                raise give_up("length", "reply cut off at max_tokens (finish_reason=length)")
            if getattr(message, "refusal", None):
                calls[-1].outcome = "refusal"
                raise give_up("refusal", f"model refused: {message.refusal}")
            try:
                value = parse_reply(content, model)
            except (ValueError, ValidationError) as error:
                calls[-1].outcome, calls[-1].error = "invalid", reask_message(error)
                follow_up = [
                    *conversation,
                    {"role": "assistant", "content": content},
                    {"role": "user", "content": reask_message(error)},
                ]
                # A re-ask carries the reply back: past the model's context, a strict server refuses it (400).
                too_long = not fits(follow_up, settings)
                if reask == settings.max_reasks or too_long:
                    rescued = _try_salvage(salvage, content)
                    if rescued is not None:
                        return reply(rescued[0], reask, rescued[1])
                    why = "no re-ask: it would not fit the model's context" if too_long else f"after {reask} re-ask(s)"
                    raise give_up("invalid", f"{reask_message(error)} ({why})", error) from error
                conversation = follow_up
                continue
            if key is not None and self.cache is not None:
                self.cache.cache_answer(key, settings.model, content, usage.prompt_tokens, usage.completion_tokens,
                                        usage.cost)  # fmt: skip
            return reply(value, reask)
        raise AssertionError("unreachable")


def _try_salvage(salvage: Salvage[T] | None, content: str) -> tuple[T, list[str]] | None:
    if salvage is None:
        return None
    try:
        return salvage(load_json(content))
    except ValueError:
        return None
