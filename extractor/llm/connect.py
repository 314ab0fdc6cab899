"""The one way a command or worker gets its structured client: on ``base_url``, or spread over ``endpoints``."""

from __future__ import annotations

from pathlib import Path

from extractor.core.settings import Settings
from extractor.llm.client import AnswerCache, StructuredClient, make_client
from extractor.llm.pool import Endpoint, EndpointPool, endpoint_settings
from extractor.llm.ratelimit import SharedLimits


def endpoint_pool(kb_root: Path | None, settings: Settings) -> EndpointPool | None:
    """Each of ``endpoints`` with its own client and its own limits, shared by the KB's processes (none without
    a KB: ``eval`` reads a corpus it must not write into); None without ``endpoints``."""
    if not settings.endpoints:
        return None
    endpoints = [
        Endpoint(
            name=name,
            settings=own,
            weight=weight,
            client=make_client(own),
            limits=SharedLimits(kb_root, own) if kb_root is not None else None,
        )
        for name, weight, own in endpoint_settings(settings)
    ]
    return EndpointPool(
        endpoints, failures_to_set_aside=settings.endpoint_failures, cooldown=settings.endpoint_cooldown
    )


def structured_client(kb_root: Path, settings: Settings, cache: AnswerCache | None = None) -> StructuredClient:
    pool = endpoint_pool(kb_root, settings)
    if pool is not None:
        first = pool.endpoints[0]
        return StructuredClient(first.client, settings, cache=cache, limits=first.limits, pool=pool)
    return StructuredClient(make_client(settings), settings, cache=cache, limits=SharedLimits(kb_root, settings))
