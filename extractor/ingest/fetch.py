"""Fetching one URL for ingest: bounded in time, size and redirects, so a hostile or broken server costs one
line, never a hung run or a full disk."""

from __future__ import annotations

import time

import httpx

from extractor import __version__
from extractor.core.records import Record
from extractor.ingest.document import IngestError

USER_AGENT = f"extractor/{__version__} (+ingest)"


class Fetched(Record):
    """What a server answered: the URL after redirects, its declared type and charset, and the bytes."""

    url: str
    content_type: str = ""
    charset: str | None = None
    data: bytes


def _megabytes(size: int) -> str:
    return f"{size / 1_048_576:.1f} MB" if size >= 1_048_576 else f"{size / 1024:.0f} KB"


def content_type_of(header: str | None) -> tuple[str, str | None]:
    """``text/html; charset=Shift_JIS`` -> (``text/html``, ``shift_jis``)."""
    if not header:
        return "", None
    kind, _, params = header.partition(";")
    charset = None
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "charset" and value:
            charset = value.strip().strip("\"'").lower()
    return kind.strip().lower(), charset


def fetch(
    url: str, *, timeout: float, max_bytes: int, max_redirects: int, client: httpx.Client | None = None
) -> Fetched:
    """GET ``url``; every failure is an :class:`IngestError` naming the URL and what went wrong."""
    own = client is None
    http = client or httpx.Client(
        follow_redirects=True,
        max_redirects=max_redirects,
        timeout=timeout,
        headers={"User-Agent": USER_AGENT},
    )
    deadline = time.monotonic() + timeout  # the whole answer, not each read: a server may drip a byte a second
    try:
        with http.stream("GET", url) as response:
            if response.status_code >= 400:
                raise IngestError(url, f"the server answered HTTP {response.status_code} {response.reason_phrase}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise IngestError(url, f"larger than {_megabytes(max_bytes)} ({_megabytes(int(declared))} declared)")
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():  # decoded: a compressed bomb is counted as it inflates
                size += len(chunk)
                if time.monotonic() > deadline:
                    raise IngestError(url, f"not answered in full within {timeout:g} s")
                if size > max_bytes:
                    raise IngestError(url, f"larger than {_megabytes(max_bytes)}")
                chunks.append(chunk)
            kind, charset = content_type_of(response.headers.get("content-type"))
            return Fetched(url=str(response.url), content_type=kind, charset=charset, data=b"".join(chunks))
    except httpx.TooManyRedirects as exc:
        raise IngestError(url, f"more than {max_redirects} redirects") from exc
    except httpx.TimeoutException as exc:
        raise IngestError(url, f"no answer within {timeout:g} s") from exc
    except (httpx.UnsupportedProtocol, httpx.InvalidURL, ValueError) as exc:
        raise IngestError(url, f"not a URL that can be fetched ({exc})") from exc
    except httpx.DecodingError as exc:
        raise IngestError(url, f"the answer could not be decoded ({exc})") from exc
    except httpx.HTTPError as exc:
        raise IngestError(url, f"cannot fetch it: {type(exc).__name__}: {exc or 'no detail'}") from exc
    finally:
        if own:
            http.close()
