"""How much a model reads at once, and how much of a source fits beside the prompt.

A source whose prompt would not fit is extracted in parts (see
:mod:`extractor.chunking`); the size of a part follows from the model's
context, the reply it may write and the prompt around the source.
"""

from __future__ import annotations

from extractor.core.errors import ExtractorError
from extractor.core.prices import known_family
from extractor.core.settings import Settings
from extractor.llm.ratelimit import CHARS_PER_TOKEN, estimated_tokens

# Published context windows, in tokens.
KNOWN_CONTEXT_TOKENS: dict[str, int] = {
    "gpt-4o": 128_000,
    "gpt-4o-mini": 128_000,
    "gpt-4.1": 1_047_576,
    "gpt-4.1-mini": 1_047_576,
    "gpt-4.1-nano": 1_047_576,
    "o3": 200_000,
    "o4-mini": 200_000,
    "gpt-5": 400_000,
    "gpt-5-mini": 400_000,
    "gpt-5-nano": 400_000,
}
# Families by name prefix, for models reached through compatible endpoints (OpenRouter, vLLM, Ollama, proxies),
# whose names vary in everything but how they start; a provider prefix ("anthropic/") is ignored. First match wins.
KNOWN_FAMILY_PREFIXES: list[tuple[str, int]] = [
    ("gpt-4-turbo", 128_000),
    ("gpt-4o", 128_000),
    ("gpt-4.1", 1_047_576),
    ("gpt-5", 400_000),
    ("gpt-3.5-turbo", 16_385),
    ("claude", 200_000),
    ("gemini-1.5", 1_048_576),
    ("gemini-2", 1_048_576),
    ("llama-3.1", 131_072),
    ("llama-3.2", 131_072),
    ("llama-3.3", 131_072),
    ("llama3.1", 131_072),
    ("llama3.2", 131_072),
    ("llama3.3", 131_072),
    ("mistral-large", 131_072),
    ("mistral-small", 32_768),
    ("qwen2.5", 32_768),
    ("deepseek-chat", 65_536),
]
# An unknown model is taken to be a small one: parts cost more calls, an overflow costs the source.
DEFAULT_CONTEXT_TOKENS = 8192
# Share of the context left unused: the character estimate of tokens is rough.
SAFETY_MARGIN = 0.1
MIN_PART_CHARS = 2000


class ContextTooSmallError(ExtractorError, ValueError):
    """The prompt around the source leaves no room for the source itself."""


def context_tokens_for(settings: Settings) -> int:
    """The setting, else the known window of the model (or its family), else a small default."""
    if settings.context_tokens:
        return settings.context_tokens
    family = known_family(settings.model, KNOWN_CONTEXT_TOKENS)
    if family:
        return KNOWN_CONTEXT_TOKENS[family]
    name = settings.model.rsplit("/", 1)[-1].casefold()
    return next((tokens for prefix, tokens in KNOWN_FAMILY_PREFIXES if name.startswith(prefix)), DEFAULT_CONTEXT_TOKENS)


def fits(messages: list[dict[str, str]], settings: Settings) -> bool:
    """Whether the prompt and the longest reply allowed fit the context, with the safety margin."""
    return estimated_tokens(messages, settings.max_tokens) <= context_tokens_for(settings) * (1 - SAFETY_MARGIN)


def part_chars(messages_without_body: list[dict[str, str]], settings: Settings) -> int:
    """Characters of source text one part may hold, given the prompt around it."""
    room = context_tokens_for(settings) * (1 - SAFETY_MARGIN) - estimated_tokens(
        messages_without_body, settings.max_tokens
    )
    chars = int(room * CHARS_PER_TOKEN)
    if chars < MIN_PART_CHARS:
        raise ContextTooSmallError(
            f"the prompt and max_tokens ({settings.max_tokens}) leave room for {max(chars, 0)} characters of source "
            f"in a context of {context_tokens_for(settings)} tokens; raise context_tokens or lower max_tokens"
        )
    return chars
