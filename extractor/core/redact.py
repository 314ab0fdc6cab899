"""Secrets out of text before it leaves the process: logs, the state store, messages, errors.

What counts as a secret: the values of the API key and the forge token, the
credentials after ``Bearer``/``Basic``/``token`` and in ``Authorization``/``api-key``
fields, and the password in a URL's userinfo (``https://user:pass@host``, the state
database's ``postgresql://user:pass@host/name``) or ``password=`` parameter. Each is
replaced by :data:`PLACEHOLDER`. The functions here are pure, apart from
:func:`known_secrets`, which reads the environment and what :func:`register` was told.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote

from pydantic import SecretStr

PLACEHOLDER = "[REDACTED]"
MIN_SECRET_LENGTH = 8  # shorter values ("x", "none") are placeholders for local endpoints, not secrets
SECRET_ENV = ("OPENAI_API_KEY", "EXTRACTOR_API_KEY", "EXTRACTOR_FORGE_TOKEN")
URL_ENV = ("OPENAI_BASE_URL", "EXTRACTOR_BASE_URL", "EXTRACTOR_REMOTE", "EXTRACTOR_FORGE_URL", "EXTRACTOR_STATE_URL")

_CHARS = r"[^\s\"',;}()<>\[\]]"  # what a credential is made of, up to the next quote, separator or space
# A credential-looking word: 8+ characters with a digit, one of =+/_ or a case change, so prose
# such as "the bearer of", "basic income" or "token limits" is left alone.
_CREDENTIAL = rf"(?={_CHARS}*?(?:[\d=+/_]|(?-i:[a-z][A-Z]))){_CHARS}{{8,}}"
_SCHEME_CREDENTIAL = re.compile(rf"(?i)\b(bearer|basic|token)(\s+){_CREDENTIAL}")
_HEADER_VALUE = re.compile(rf"""(?i)\b((?:x-)?api[-_]?key|authorization)(["']?\s*[:=]\s*["']?){_CREDENTIAL}""")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/?#\s@]+)@")
_URL_PASSWORD = re.compile(r"(?i)([?&]password=)[^&#\s\"'<>]+")  # a database URL's password parameter
_registered: set[str] = set()


def _variants(secret: str) -> set[str]:
    """The secret as written, percent-encoded and JSON-escaped: the forms it can take in a message."""
    return {secret, quote(secret, safe=""), json.dumps(secret)[1:-1]}


def _userinfo(match: re.Match[str]) -> str:
    scheme, userinfo = match.group(1), match.group(2)
    if ":" in userinfo:
        return f"{scheme}{userinfo.split(':', 1)[0]}:{PLACEHOLDER}@"
    if scheme.lower() in ("http://", "https://"):  # a lone userinfo there is a token (https://TOKEN@host)
        return f"{scheme}{PLACEHOLDER}@"
    return match.group(0)  # ssh://git@host names a user, not a secret


def redact_values(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each secret value (in its written, URL and JSON forms) replaced by the placeholder."""
    values = {v for s in secrets if s and len(s) >= MIN_SECRET_LENGTH for v in _variants(s)}
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, PLACEHOLDER)
    return text


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every secret value, credential and URL password replaced by the placeholder."""
    text = redact_values(text, secrets)
    text = _SCHEME_CREDENTIAL.sub(rf"\1\2{PLACEHOLDER}", text)
    text = _HEADER_VALUE.sub(rf"\1\2{PLACEHOLDER}", text)
    text = _URL_PASSWORD.sub(rf"\1{PLACEHOLDER}", text)
    return _URL_USERINFO.sub(_userinfo, text)


def url_secrets(url: str | None) -> list[str]:
    """The secrets in a URL: its userinfo's password, a lone http(s) userinfo (a token), a ``password=``
    parameter (a database URL's)."""
    found = [match.group(0).split("=", 1)[1] for match in _URL_PASSWORD.finditer(url or "")]
    found += [unquote(value) for value in found]
    for match in _URL_USERINFO.finditer(url or ""):
        user, _, password = match.group(2).partition(":")
        if password:
            found += [password, unquote(password)]
        elif match.group(1).lower() in ("http://", "https://"):
            found += [user, unquote(user)]
    return found


def secret_value(value: SecretStr | str | None) -> str | None:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def register(*values: SecretStr | str | None) -> None:
    """Remember secrets that do not come from the environment (say, an api_key in the settings file)."""
    _registered.update(v for v in map(secret_value, values) if v and len(v) >= MIN_SECRET_LENGTH)


def register_settings(settings: Any) -> None:
    """The API key and the passwords in the endpoint, remote, forge and state database URLs of loaded settings."""
    register(settings.api_key)
    for url in (settings.base_url, settings.remote, settings.forge_url, getattr(settings, "state_url", None)):
        register(*url_secrets(url))
    for endpoint in getattr(settings, "endpoints", []):
        register(endpoint.api_key, *url_secrets(endpoint.base_url))


def known_secrets() -> set[str]:
    """Secret values this process knows: from the environment, and registered."""
    found = {os.environ.get(name, "") for name in SECRET_ENV}
    for name in URL_ENV:
        found.update(url_secrets(os.environ.get(name)))
    return {s for s in found | _registered if len(s) >= MIN_SECRET_LENGTH}


def scrub(text: str, *extra: SecretStr | str | None) -> str:
    """``text`` redacted against every known secret, plus ``extra`` ones."""
    return redact(text, known_secrets() | {v for v in map(secret_value, extra) if v})


def scrub_data(value: Any) -> Any:
    """Strings anywhere inside dicts, lists and tuples redacted; other values as they are."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {key: scrub_data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub_data(item) for item in value)
    return value
