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
from typing import Any

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


class Opened(BaseModel):
    """A pull request as the forge names it: its page and its number (None when the forge gave none)."""

    url: str
    number: int | None


def _forge_headers(settings: Settings) -> tuple[dict[str, str], SecretStr | None]:
    token = forge_token()
    scheme = "Bearer" if settings.forge == "github" else "token"
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"{scheme} {token.get_secret_value()}"
    return headers, token


def _api(settings: Settings, path: str) -> str:
    assert settings.forge_url and settings.forge_repo
    return f"{settings.forge_url.rstrip('/')}/repos/{settings.forge_repo}/{path}"


def _forge_call(
    http: httpx.Client, method: str, url: str, what: str, settings: Settings, allow: tuple[int, ...] = (),
    **kwargs: Any,
) -> httpx.Response:  # fmt: skip
    """One REST call; a transport error or an error status (other than ``allow``) becomes a redacted
    :class:`PublishError`."""
    headers, token = _forge_headers(settings)
    try:
        response = http.request(method, url, headers=headers, **kwargs)
    except httpx.HTTPError as exc:
        raise PublishError(f"{what}: {type(exc).__name__}") from None
    if response.status_code >= 400 and response.status_code not in allow:
        raise _refused(what, response, token)
    return response


def _refused(what: str, response: httpx.Response, token: SecretStr | None) -> PublishError:
    detail = scrub(" ".join(response.text.split()), token)[:200]  # redacted before cut: no partial token
    return PublishError(f"{what}: HTTP {response.status_code}: {detail}")


def open_pull_request(request: PullRequest, settings: Settings, client: httpx.Client | None = None) -> Opened:
    """Open the pull request; one already open for the branch counts as opened (and is looked up)."""
    assert settings.forge and settings.forge_url and settings.forge_repo
    what = f"pull request for {request.head}"
    with client or httpx.Client(timeout=30) as http:
        response = _forge_call(http, "POST", _api(settings, "pulls"), what, settings, allow=(409, 422),
                               json=request.model_dump())  # fmt: skip
        if response.status_code >= 400:
            if "already exists" in response.text.lower():
                return _existing_pull_request(http, request.head, settings) or Opened(url="", number=None)
            raise _refused(what, response, forge_token())
        data = response.json()
    number = data.get("number")
    return Opened(url=scrub(str(data.get("html_url") or data.get("url") or ""), forge_token()),
                  number=number if isinstance(number, int) else None)  # fmt: skip


def _existing_pull_request(http: httpx.Client, branch: str, settings: Settings) -> Opened | None:
    """The open pull request whose head is ``branch`` (Gitea and GitHub list them alike)."""
    response = _forge_call(http, "GET", _api(settings, "pulls"), f"pull requests of {branch}", settings,
                           params={"state": "open", "per_page": 100, "limit": 50})  # fmt: skip
    for pull in response.json() if isinstance(response.json(), list) else []:
        head = pull.get("head") or {}
        if isinstance(head, dict) and head.get("ref") == branch and isinstance(pull.get("number"), int):
            return Opened(url=scrub(str(pull.get("html_url") or "")), number=pull["number"])
    return None


def review_marker(branch: str) -> str:
    """The hidden line that says a comment is this branch's review: found and replaced, never repeated."""
    return f"<!-- extractor-review branch={branch} -->"


def upsert_review_comment(
    number: int, branch: str, body: str, settings: Settings, client: httpx.Client | None = None
) -> None:
    """Post the review as a comment on pull request ``number``, or replace the one posted before."""
    marker = review_marker(branch)
    text = f"{marker}\n{body}"
    what = f"review comment on pull request {number}"
    with client or httpx.Client(timeout=30) as http:
        listed = _forge_call(http, "GET", _api(settings, f"issues/{number}/comments"), what, settings,
                             params={"per_page": 100, "limit": 50})  # fmt: skip
        comments = listed.json() if isinstance(listed.json(), list) else []
        mine = next((c for c in comments if isinstance(c, dict) and marker in str(c.get("body") or "")), None)
        if mine is None:
            _forge_call(http, "POST", _api(settings, f"issues/{number}/comments"), what, settings,
                        json={"body": text})  # fmt: skip
        else:
            _forge_call(http, "PATCH", _api(settings, f"issues/comments/{mine['id']}"), what, settings,
                        json={"body": text})  # fmt: skip


def publish(kb: Path, branch: str, settings: Settings, review_comment: str | None = None) -> Opened | None:
    """Push the branch, open its pull request and post (or replace) the review comment, as configured."""
    if settings.remote:
        push(kb, branch, settings)
    if not settings.forge:
        return None
    opened = open_pull_request(pull_request_for(kb, branch, settings), settings)
    if review_comment is not None and opened.number is not None:
        upsert_review_comment(opened.number, branch, review_comment, settings)
    return opened
