"""The KB index a worker keeps: a reload reads only what changed, and gives what a fresh load gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from extractor.kb import index as kb_module
from extractor.kb.index import KBIndex


def claim(title: str, description: str) -> str:
    return f"---\ntype: claim\ndomain: health\ndescription: {description}\n---\n\n# {title}\n\nBody.\n"


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = kb_module.read_note_ref

    def counting(path: Path, rel: object) -> object:
        seen.append(str(rel))
        return real(path, rel)  # type: ignore[arg-type]

    monkeypatch.setattr(kb_module, "read_note_ref", counting)
    return seen


def test_a_reload_reads_only_changed_files_and_matches_a_fresh_load(tmp_path: Path, reads: list[str]) -> None:
    folder = tmp_path / "claims" / "health"
    folder.mkdir(parents=True)
    fruits = ["apples", "pears", "plums", "cherries", "lemons"]
    for n, fruit in enumerate(fruits):
        (folder / f"claim-{n}.md").write_text(claim(f"Claim number {n} says something true", f"about {fruit}"))
    first = KBIndex.load(tmp_path)
    assert len(reads) == 5 and first.related("plums", 1)[0].title == "Claim number 2 says something true"

    reads.clear()
    same = KBIndex.load(tmp_path, previous=first)
    assert reads == [] and same.claims == first.claims
    assert same._retriever is first._retriever  # nothing changed: the ranking is not built again

    reads.clear()
    (folder / "claim-1.md").write_text(claim("Claim number 1 now says something longer", "about walruses"))
    (folder / "claim-5.md").write_text(claim("A new claim joins the others here", "about otters"))
    (folder / "claim-4.md").unlink()
    reloaded = KBIndex.load(tmp_path, previous=same)
    assert sorted(reads) == ["claims/health/claim-1.md", "claims/health/claim-5.md"]
    fresh = KBIndex.load(tmp_path)
    assert [c.model_dump() for c in reloaded.claims] == [c.model_dump() for c in fresh.claims]
    assert reloaded.files == fresh.files
    assert reloaded.related("walruses", 1)[0].path == "claims/health/claim-1.md"
    assert reloaded.resolve("claim-4") is None and reloaded.resolve("claim-5") is not None
