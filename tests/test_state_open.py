"""Opening a KB's state store for the first time from several processes at once."""

from __future__ import annotations

import multiprocessing as mp
import re
from pathlib import Path

import pytest

from extractor.store.state import MIGRATIONS, StateStore, StoreError
from tests.conftest import started_together


def _open(kb: str, start: mp.synchronize.Event) -> None:  # type: ignore[name-defined]
    start.wait()
    StateStore.open(Path(kb)).close()


def test_processes_that_open_a_new_store_together_all_get_a_migrated_store(tmp_path: Path) -> None:
    """Two `extract` commands started together on a fresh KB each open the store; neither may crash on a
    migration the other already applied ("table sources already exists")."""
    for trial in range(8):
        kb = tmp_path / f"kb{trial}"
        kb.mkdir()
        assert started_together(_open, str(kb)) == [0] * 6
        store = StateStore.open(kb)
        try:
            assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        finally:
            store.close()


def test_a_store_that_is_not_a_database_is_one_clear_error(tmp_path: Path) -> None:
    """A damaged state file stops the command with a line naming it, not a traceback."""
    StateStore.open(tmp_path).close()
    path = tmp_path / ".extractor" / "state.db"
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    path.write_bytes(b"this is not an SQLite database, it is a note someone saved here" * 20)
    with pytest.raises(StoreError, match=rf"^{re.escape(str(path))}: cannot open the state store: "):
        StateStore.open(tmp_path)
