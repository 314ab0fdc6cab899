"""Gate decisions judged by hand, and how often each gate agrees with them.

A label names one decision on one accepted claim of one run: a figure or quotation the grounding gate
might complain about (``where`` and ``text``), or a whole-claim gate such as ``description``. ``real``
says whether the complaint is a real error a reviewer should see. A gate's false-positive rate is the
share of labelled sound decisions it still flags or drops; its miss rate is the share of labelled real
errors it lets through unflagged.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ValidationError

from extractor.core.errors import ExtractorError
from extractor.core.text import normalise
from extractor.evaluate.evaluation import SourceReport
from extractor.extraction.extract import JudgedClaim


class LabelError(ExtractorError):
    """The labels file cannot be read."""


class Label(BaseModel):
    gate: str = "grounding"
    run: str
    claim: str  # the accepted claim's file stem
    where: str = ""  # title | description | argument | evidence[i]; for grounding labels
    text: str = ""  # the figure or quotation
    real: bool
    kind: str = ""
    note: str = ""


class GateScore(BaseModel):
    gate: str
    labelled_sound: int
    false_positives: int
    labelled_real: int
    caught: int
    not_evaluated: int  # labels of runs or claims this evaluation did not see

    @property
    def false_positive_rate(self) -> float:
        return self.false_positives / self.labelled_sound if self.labelled_sound else 0.0

    @property
    def miss_rate(self) -> float:
        return (self.labelled_real - self.caught) / self.labelled_real if self.labelled_real else 0.0


def load_labels(path: Path) -> list[Label]:
    labels: list[Label] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise LabelError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise LabelError(f"{path}: cannot read labels: {exc.strerror or exc}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LabelError(f"{path}:{number}: not JSON: {exc.msg} (column {exc.colno})") from exc
        try:
            labels.append(Label.model_validate(data))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "the line"
            raise LabelError(f"{path}:{number}: not a label: {where}: {first['msg']}") from exc
    return labels


def _squeezed(text: str) -> str:
    return normalise(text).replace(" ", "").replace("$", "").strip(".,")


def flags_decision(label: Label, claim: JudgedClaim) -> bool:
    """Whether the gates flagged or dropped the labelled decision on this claim."""
    if label.gate != "grounding":
        return any(failure.gate == label.gate for failure in claim.failures)
    wanted = _squeezed(label.text)
    for flag in claim.flags:
        found = _squeezed(flag.text)
        if flag.where == label.where and (found == wanted or wanted in found or found in wanted):
            return True
    messages = [failure.message for failure in claim.failures if failure.gate == "grounding"]
    return any(label.where in message and wanted in _squeezed(message) for message in messages)


def score_labels(labels: list[Label], reports: list[SourceReport]) -> list[GateScore]:
    by_run = {report.run: report for report in reports if report.error is None}
    scores: dict[str, GateScore] = {}
    for label in labels:
        score = scores.setdefault(label.gate, GateScore(gate=label.gate, labelled_sound=0, false_positives=0,
                                                        labelled_real=0, caught=0, not_evaluated=0))  # fmt: skip
        report = by_run.get(label.run)
        title = report.titles_by_stem.get(label.claim) if report else None
        claim = next((c for c in report.judged if c.title == title), None) if report and title else None
        if claim is None:
            score.not_evaluated += 1
            continue
        flagged = flags_decision(label, claim)
        if label.real:
            score.labelled_real += 1
            score.caught += flagged
        else:
            score.labelled_sound += 1
            score.false_positives += flagged
    return sorted(scores.values(), key=lambda s: s.gate)
