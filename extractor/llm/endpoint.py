"""Which LLM endpoint a run talks to: the configured one, or the embedded model."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from extractor.core.settings import EMBEDDED_PREFIX, Settings, StructuredMode
from extractor.llm.localmodel import default_model_path, local_server


@contextlib.contextmanager
def llm_endpoint(settings: Settings) -> Iterator[Settings]:
    """Settings with a live endpoint for the ``with`` block.

    With ``base_url`` set (settings file or ``OPENAI_BASE_URL``) nothing starts.
    Otherwise the embedded model's server runs until the block ends; it takes
    ``json_object`` with a ``schema`` field, so that mode is chosen for it.
    """
    if settings.has_endpoint:
        yield settings
        return
    model = settings.local_model or default_model_path()
    alias = model.name.removesuffix(".gguf")
    with local_server(
        model,
        alias,
        n_ctx=settings.local_ctx,
        threads=settings.local_threads,
        startup_timeout=settings.local_startup_timeout,
    ) as server:
        yield settings.model_copy(
            update={
                "base_url": server.base_url,
                "endpoint_id": f"{EMBEDDED_PREFIX}{alias}",  # the port changes every run; the model does not
                "model": alias,
                "structured_mode": StructuredMode.JSON_OBJECT_SCHEMA,
                "max_tokens": settings.local_max_tokens,
                "context_tokens": settings.local_ctx,  # what the server was started with
                "max_reasks": settings.local_max_reasks,
                "gate_reasks": settings.local_gate_reasks,
                "entities": settings.local_entities,
                "temperature": settings.local_temperature,
                "seed": settings.local_seed,
            }
        )
