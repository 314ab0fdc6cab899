"""Several endpoints of one model (``endpoints``): each request goes to the least busy endpoint not set aside.

Least busy is the fewest requests outstanding for the endpoint's weight, then the fewest sent for its weight
(so requests made one at a time still share out by weight). An endpoint whose requests fail
``endpoint_failures`` times in a row (transport errors, 5xx, 429) is set aside for ``endpoint_cooldown``
seconds, and its requests go to the others; after that one request tries it again (and a failure sets it
aside at once). An endpoint that failed once is asked only when no healthy one is free. Each endpoint keeps its
own rate limits, shared by every process of the KB. Outstanding counts and failures are per process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from extractor.core.settings import Settings


@dataclass
class Endpoint:
    """One endpoint: its name in the call log and costs, the settings its requests are made with, and its
    state in this process."""

    name: str
    settings: Settings
    weight: float = 1.0
    client: Any = None  # its openai.OpenAI
    limits: Any = None  # its SharedLimits, or None
    outstanding: int = 0
    sent: int = 0
    failures: int = 0  # in a row
    aside_until: float = 0.0  # set aside until then (monotonic clock); 0: never set aside, or back and well
    probing: bool = False  # back from being set aside: one request is trying it


def endpoint_name(base_url: str, model: str) -> str:
    """``host:port/path model``: what the call log and ``costs`` call an endpoint (never its key)."""
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    return f"{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path.rstrip('/')} {model}"


def endpoint_settings(settings: Settings) -> list[tuple[str, float, Settings]]:
    """(name, weight, settings) of each of ``endpoints``: the shared settings with its URL, model, key and
    limits."""
    found = []
    for spec in settings.endpoints:
        model = spec.model or settings.model
        own = settings.model_copy(
            update={
                "base_url": spec.base_url,
                "model": model,
                "api_key": spec.api_key or settings.api_key,
                "requests_per_minute": spec.requests_per_minute,
                "tokens_per_minute": spec.tokens_per_minute,
                "endpoint_id": None,
                "endpoints": [],
            }
        )
        found.append((endpoint_name(spec.base_url, model), spec.weight, own))
    return found


@dataclass
class EndpointPool:
    endpoints: list[Endpoint]
    failures_to_set_aside: int = 3
    cooldown: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def acquire(self) -> Endpoint:
        """The endpoint for the next request, counted as outstanding until :meth:`release`."""
        with self._lock:
            now = self.clock()
            ready = [e for e in self.endpoints if e.aside_until <= now]
            if not ready:  # every one set aside: the one back soonest
                ready = [min(self.endpoints, key=lambda e: e.aside_until)]
            back = [e for e in ready if e.aside_until and not e.probing]
            chosen = back[0] if back else min(ready, key=self._load)  # one request tries a returning endpoint
            chosen.probing = chosen.probing or bool(back)
            chosen.outstanding += 1
            chosen.sent += 1
            return chosen

    @staticmethod
    def _load(endpoint: Endpoint) -> tuple[bool, float, float]:
        """Healthy first (no failure since its last success, no probe pending), then the fewest requests
        outstanding for its weight, then the fewest sent for its weight."""
        unsure = endpoint.failures > 0 or endpoint.probing
        return unsure, endpoint.outstanding / endpoint.weight, (endpoint.sent + 1) / endpoint.weight

    def release(self, endpoint: Endpoint, failed: bool) -> None:
        """The request ended; ``failed``: by the endpoint's fault (a transport error, 5xx, 429)."""
        with self._lock:
            endpoint.outstanding -= 1
            probe, endpoint.probing = endpoint.probing, False
            if not failed:
                endpoint.failures, endpoint.aside_until = 0, 0.0
                return
            endpoint.failures += 1
            if probe or endpoint.failures >= self.failures_to_set_aside:
                endpoint.aside_until = self.clock() + self.cooldown  # a failed probe: aside again at once
