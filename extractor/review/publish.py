"""Publishing extraction branches: a push to a remote and a pull request on the forge.

Both are optional (``remote``; ``forge``). The forge is reached over its REST
API with httpx: Gitea/Forgejo and GitHub take the same ``POST
/repos/{owner}/{repo}/pulls``. The token comes from the environment
(``EXTRACTOR_FORGE_TOKEN``), is held as a ``SecretStr``, and is never printed,
logged or written to the KB: every error message is redacted against it, the
API key and the credentials in the remote's URL. A failure is recorded and
retried on the next cycle; the local commit stays.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
from pydantic import BaseModel, SecretStr

from extractor.core.errors import ExtractorError
from extractor.core.redact import scrub, url_secrets
from extractor.core.settings import Settings
from extractor.kb.gitrepo import GitError, git

TOKEN_ENV = "EXTRACTOR_FORGE_TOKEN"


class PublishError(ExtractorError):
    """The push or the pull request failed; the message never contains the token."""


def forge_token() -> SecretStr | None:
    token = os.environ.get(TOKEN_ENV)
    return SecretStr(token) if token else None


def remote_secrets(kb: Path, remote: str) -> list[str]:
    """Passwords in the remote's URL, whether ``remote`` is a URL or the name of a configured remote."""
    try:
        urls = git(kb, "remote", "get-url", "--all", "--push", remote).split()
    except GitError:
        urls = []
    return [secret for url in (remote, *urls) for secret in url_secrets(url)]


class PullRequest(BaseModel):
    title: str
    body: str
    head: str
    base: str


def pull_request_for(kb: Path, branch: str, settings: Settings) -> PullRequest:
    """Title and body naming the source, agent, worker, model and claims."""
    from extractor.review.branches import describe_branch, flags_of

    item = describe_branch(kb, branch, settings)
    shown = flags_of(kb, item, settings)
    flagged = shown.claims
    claims = (
        "\n".join(
            f"- `{claim.path}`" + "".join(f"\n  - flag: {flag.where}: {flag.reason}" for flag in claim.flags)
            for claim in flagged
        )
        or "- none"
    )
    enriched = "\n".join(f"- `{path}`" for path in item.enrichments) or "- none"
    entities = "\n".join(
        f"- `{entity.path}` ({'new ' + entity.entity_type if entity.change == 'new' else 'update'})"
        + "".join(f"\n  - {bullet.removeprefix('- ')}" for bullet in entity.added)
        for entity in shown.entities
    )
    warnings = "\n".join(f"- {w}" for w in item.warnings) or "- none"
    body = (
        f"Source: `{item.source}`\n\nAgent: {item.agent} (worker {item.worker})\n"
        f"Model: {item.model}\nPrompt: {item.prompt_hash}\n\n"
        f"Claims:\n{claims}\n\nEnrichments:\n{enriched}\n\n"
        + (f"Entities:\n{entities}\n\n" if entities else "")
        + f"Gate warnings:\n{warnings}\n"
    )
    return PullRequest(
        title=f"{item.agent}: extract claims from {Path(item.source).name}",
        body=body,
        head=branch,
        base=settings.main_branch,
    )


def push(kb: Path, branch: str, settings: Settings) -> None:
    assert settings.remote
    try:
        git(kb, "push", "--quiet", "--force", settings.remote, f"refs/heads/{branch}:refs/heads/{branch}")
    except GitError as exc:
        # git names the remote's URL in some errors ("unable to look up user:password@host").
        message = scrub(f"push of {branch} to {settings.remote} failed: {exc}", forge_token(),
                        *remote_secrets(kb, settings.remote))  # fmt: skip
        raise PublishError(message) from None


def open_pull_request(request: PullRequest, settings: Settings, client: httpx.Client | None = None) -> str:
    """Open the pull request; returns its URL (an existing one for the branch counts as opened)."""
    assert settings.forge and settings.forge_url and settings.forge_repo
    token = forge_token()
    scheme = "Bearer" if settings.forge == "github" else "token"
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"{scheme} {token.get_secret_value()}"
    url = f"{settings.forge_url.rstrip('/')}/repos/{settings.forge_repo}/pulls"
    try:
        with client or httpx.Client(timeout=30) as http:
            response = http.post(url, json=request.model_dump(), headers=headers)
    except httpx.HTTPError as exc:
        raise PublishError(f"pull request for {request.head}: {type(exc).__name__}") from None
    if response.status_code in (409, 422) and "already exists" in response.text.lower():
        return ""
    if response.status_code >= 400:
        detail = scrub(" ".join(response.text.split()), token)[:200]  # redacted before cut: no partial token
        raise PublishError(f"pull request for {request.head}: HTTP {response.status_code}: {detail}")
    data = response.json()
    return scrub(str(data.get("html_url") or data.get("url") or ""), token)


def publish(kb: Path, branch: str, settings: Settings) -> str | None:
    """Push the branch and open its pull request, as configured; returns the pull request's URL."""
    if settings.remote:
        push(kb, branch, settings)
    if settings.forge:
        return open_pull_request(pull_request_for(kb, branch, settings), settings)
    return None
