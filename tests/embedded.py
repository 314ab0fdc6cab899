"""Shared helpers for tests that run the real embedded model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def need_embedded_model() -> Path:
    """The default GGUF; skips without llama-cpp-python, fails instead in CI."""
    from extractor.llm.localmodel import LocalModelError, default_model_path

    try:
        import llama_cpp.server  # noqa: F401

        return default_model_path()
    except (ImportError, LocalModelError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must install the embedded model (make install): {exc}")
        pytest.skip(f"embedded model not installed: {exc}")


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces; ppid follows it.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
