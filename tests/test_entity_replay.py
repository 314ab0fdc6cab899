"""Replay of the recorded runs that created or edited entity notes, through the scripted server and the planner.

Each run's accepted notes become the model's answer: its ``added/`` claims and entity notes, and, for each
entity note it edited (``modified-before`` → ``modified-after``), an update with the bullets it added. The
pipeline asks over real HTTP, judges, reconciles with the KB as the run found it (the snapshot without the
run's own additions, its edited notes as they were before) and plans the commit. Measured: where the accepted
new entities land, duplicates, and the format and order of every bullet written.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from pathlib import Path

import pytest

from extractor.commit.changeset import ChangeSet
from extractor.commit.plan import plan_changes
from extractor.core.settings import Settings
from extractor.evaluate.runs import as_answer, as_entity_answer, as_update_answer
from extractor.extraction.strategy import extract_source
from extractor.kb.claims import ClaimParseError
from extractor.kb.entities import (
    TIMELINE_BULLET,
    TimelineEvent,
    find_entity,
    parse_entity,
    timeline_bullets,
    timeline_events,
)
from extractor.kb.gitrepo import FileEdit
from extractor.kb.index import KBIndex
from extractor.kb.sources import SourceError, load_source
from extractor.kb.yamlio import split_document
from extractor.llm.client import LLMError, StructuredClient, make_client
from tests.fakeopenai import FakeOpenAI, answer

LABELS = Path(__file__).parent / "data" / "entity_gate_labels.jsonl"


class RunView:
    """The corpus KB as one run found it: without the notes it added, its edited notes as they were before."""

    def __init__(self, kb: Path, run: Path, source_path: str) -> None:
        self.kb = kb
        self.source_path = source_path
        self.before = run / "before.md"
        self.added = {p.relative_to(run / "added").as_posix() for p in (run / "added").rglob("*.md")}
        folder = run / "modified-before"
        self.modified = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*.md")} if folder.is_dir() else {}

    def read(self, path: str) -> str | None:
        if path == self.source_path:
            return self.before.read_text(encoding="utf-8")
        if path in self.modified:
            return self.modified[path].read_text(encoding="utf-8")
        file = self.kb / path
        return None if path in self.added or not file.is_file() else file.read_text(encoding="utf-8")

    def names(self, folder: str) -> frozenset[str]:
        directory = self.kb / folder
        names = {p.name for p in directory.iterdir()} if directory.is_dir() else set()
        return frozenset(names - {Path(p).name for p in self.added if str(Path(p).parent) == folder})

    def is_folder(self, folder: str) -> bool:
        return (self.kb / folder).is_dir()

    def folded_names(self, folder: str) -> frozenset[str]:
        return frozenset(name.casefold() for name in self.names(folder))

    def message_that_added(self, path: str) -> str | None:
        return None

    def lines_added_to(self, path: str) -> list[FileEdit]:
        return []


def texts_of(plan: ChangeSet) -> dict[str, str | None]:
    return {change.path: change.text for change in plan.changes}


def _entity_runs(extractions: Path) -> list[Path]:
    return [
        run
        for run in sorted(extractions.iterdir())
        if any((run / part / "entities").is_dir() for part in ("added", "modified-after"))
    ]


def test_recorded_entity_runs_land_where_people_put_them(corpus: Path, fake_llm: FakeOpenAI) -> None:
    full = KBIndex.load(corpus / "kb")
    settings = Settings(base_url=fake_llm.base_url, model="replay", max_reasks=0, gate_reasks=0, timeout=10,
                        context_tokens=1_000_000, claims_dir="domains")  # fmt: skip
    llm = StructuredClient(make_client(settings), settings)
    figures: Counter[str] = Counter()
    missed: list[str] = []
    bad_bullets: list[str] = []
    complaints: set[tuple[str, str, str]] = set()
    for run in _entity_runs(corpus / "extractions"):
        try:
            source = load_source(run / "before.md")
        except SourceError:
            figures["runs without a readable source"] += 1
            continue
        source = source.model_copy(update={"domain": source.domain or "internet-finance"})
        source_path = f"inbox/archive/{run.name.split('@')[0]}.md"
        view = RunView(corpus / "kb", run, source_path)
        claims, entities, accepted = [], [], {}
        for path in sorted((run / "added").rglob("*.md")):
            text = path.read_text(encoding="utf-8")
            relative = path.relative_to(run / "added").as_posix()
            if relative.startswith("entities/"):
                drafted = as_entity_answer(text, path.stem)
                if drafted is not None:
                    entities.append(drafted)
                    accepted[relative] = drafted["name"]
            elif "type: claim" in text.split("\n---", 1)[0]:
                with contextlib.suppress(ClaimParseError):
                    claims.append(as_answer(text)[2])
        updates = []
        for relative, before in view.modified.items():
            after = run / "modified-after" / relative
            if relative.startswith("entities/") and after.is_file():
                drafted_update = as_update_answer(before.read_text(encoding="utf-8"), after.read_text(encoding="utf-8"))
                if drafted_update is not None:
                    updates.append(drafted_update)
                    figures["accepted updates"] += 1
                    figures["accepted update bullets"] += len(drafted_update["timeline"])  # type: ignore[arg-type]
        own_claims = {Path(p).stem.casefold() for p in view.added}
        known = [ref for ref in full.entities if ref.path not in view.added and ref.path not in view.modified]
        known += [ref for p, f in view.modified.items() if (ref := parse_entity(p, f.read_text(encoding="utf-8")))]
        index = KBIndex(full.root, [c for c in full.claims if c.stem.casefold() not in own_claims], full.files,
                        entities=known, entity_schema=full.entity_schema)  # fmt: skip
        fake_llm.push(answer({"key_facts": [], "claims": claims, "enrichments": [], "entities": entities,
                              "entity_updates": updates, "null_result_reason": "replay", "notes": ""}))  # fmt: skip
        try:
            result = extract_source(source, source_path, settings, llm, index)
        except LLMError as exc:  # nothing in the answer is valid: every accepted note of the run is missed
            figures["runs whose answer was refused"] += 1
            figures["accepted new entities"] += len(accepted)
            missed += [f"{run.name}: {path} (answer refused: {str(exc)[:120]})" for path in accepted]
            continue
        plan = plan_changes(corpus / "kb", source, result, settings, index, "2026-12-02", 1, "replay", False, view)
        figures["runs"] += 1
        figures["accepted new entities"] += len(accepted)
        created = set(plan.entities_created)
        for path, name in accepted.items():
            existing = find_entity(str(name), known)
            if path in created:
                figures["landed at the same path"] += 1
            elif existing is not None and existing.path in plan.entities_updated:
                figures["landed as an update of a note the KB had"] += 1
            else:
                missed.append(f"{run.name}: {path}")
        for drafted_update in updates:
            target = find_entity(str(drafted_update["name"]), known)
            written = (texts_of(plan).get(target.path) or "") if target else ""
            figures["accepted update bullets written"] += sum(
                TimelineEvent(date=e["date"], text=e["text"]).bullet() in written
                for e in drafted_update["timeline"]  # type: ignore[attr-defined]
            )
        figures["entity notes created"] += len(created)
        figures["entity notes updated"] += len(plan.entities_updated)
        texts = {change.path: change.text for change in plan.changes}
        for path in created:
            ref = parse_entity(path, texts[path] or "")
            assert ref is not None, path
            others = [e for e in known if e.path != path]
            if find_entity(ref.name, others) is not None or (corpus / "kb" / path).exists() and path not in view.added:
                figures["duplicates"] += 1
        for path in [*created, *plan.entities_updated]:
            body = split_document(texts[path] or "")[1]
            before = view.read(path)
            old = set(timeline_bullets(split_document(before)[1])) if before else set()
            new = [b for b in timeline_bullets(body) if b not in old]
            figures["bullets written"] += len(new)
            bad_bullets += [f"{path}: {b}" for b in new if not TIMELINE_BULLET.match(b)]
            dates = [e.date for e in timeline_events(body)]
            if path in created and dates != sorted(dates):
                bad_bullets.append(f"{path}: out of date order")
        for name, flag in result.entities.complaints():
            figures["items the gates removed or flagged"] += 1
            complaints.add((run.name.split("@")[0], name, flag.text))
        for decision in result.entities.decisions:
            figures[f"decision: {decision.outcome}"] += 1
    share = (figures["landed at the same path"] + figures["landed as an update of a note the KB had"]) / max(
        1, figures["accepted new entities"]
    )
    print("\nentity replay:", json.dumps(dict(sorted(figures.items())), indent=1))
    print(f"accepted new entities landed: {share:.0%}")
    for line in missed[:40]:
        print("  missed:", line)
    for line in bad_bullets[:20]:
        print("  bullet:", line)
    # Every complaint of the entity gates is labelled by hand (real or false, and why); a new one fails here.
    labels = {(row["run"], row["entity"], row["text"]): row for row in map(json.loads, LABELS.read_text().splitlines())}
    false = [key for key in complaints if labels.get(key, {}).get("label") == "false"]
    print(f"complaints: {len(complaints)}, labelled false: {len(false)}: {sorted(false)}")
    assert complaints == set(labels), (
        f"unlabelled: {sorted(complaints - set(labels))}; gone: {sorted(set(labels) - complaints)}"
    )
    assert figures["runs"] >= 30 and figures["accepted new entities"] >= 90
    assert share >= 0.9, "see the missed entities above"
    assert figures["duplicates"] == 0
    assert not bad_bullets


@pytest.fixture(autouse=True)
def _quiet_bm25(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING")
