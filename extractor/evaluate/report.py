"""An evaluation as text and as JSON: per source, in total, against labels, and two configurations side by side.

Everything here computes strings from reports; printing and writing files is the command line's.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from extractor.evaluate.evaluation import SourceReport, Totals
from extractor.evaluate.labels import GateScore


class Evaluation(BaseModel):
    """One configuration's evaluation of a folder of runs."""

    name: str  # the configuration file, or "settings"
    replay: bool
    sources: list[SourceReport]
    totals: Totals
    gates: list[GateScore]
    problems: list[str]  # runs left out, one line each


def _share(value: float) -> str:
    return f"{value:.0%}"


def _cost(value: float | None) -> str:
    return "n/a" if value is None else f"${value:.4f}"


# The rows of a summary: label, and how to read the value from the totals.
ROWS: list[tuple[str, str]] = [
    ("sources", "sources"),
    ("sources failed", "failed_sources"),
    ("accepted claims", "accepted"),
    ("drafted claims", "drafted"),
    ("committed claims", "committed"),
    ("accepted claims recovered", "recovered"),
    ("recovered share", "recovered_share"),
    ("drafts with no accepted counterpart", "unmatched"),
    ("flagged items (evidence, argument)", "flagged_items"),
    ("removed evidence items", "removed_items"),
    ("evidence found in the source", "evidence_found_share"),
    ("derived figures", "derived"),
    ("near quotations", "near"),
    ("accepted new entity notes", "accepted_entities"),
    ("entity notes drafted new", "entities_created"),
    ("entity notes updated", "entities_updated"),
    ("accepted entity notes recovered", "entities_recovered"),
    ("entity notes recovered share", "entities_recovered_share"),
    ("median prompt tokens, first request", "median_first_prompt_tokens"),
    ("median prompt tokens, all requests", "median_prompt_tokens"),
    ("cached prompt tokens", "cached_tokens"),
    ("completion tokens", "completion_tokens"),
    ("re-asks", "reasks"),
    ("sources re-asked (replay: would be)", "reasked_share"),
    ("cost", "cost"),
    ("seconds", "seconds"),
]


def _value(totals: Totals, field: str) -> str:
    value = getattr(totals, field)
    if field.endswith("share"):
        return _share(value)
    if field == "cost":
        return _cost(value)
    if field == "seconds":
        return f"{value:.1f}"
    if isinstance(value, float):
        return f"{value:,.0f}"
    return f"{value:,}"


def _difference(a: Totals, b: Totals, field: str) -> str:
    x, y = getattr(a, field), getattr(b, field)
    if x is None or y is None:
        return ""
    delta = y - x
    if field.endswith("share"):
        return f"{delta * 100:+.0f} pts" if delta else "0"
    if field == "cost":
        return f"{delta:+.4f}" if delta else "0"
    if field == "seconds":
        return f"{delta:+.1f}"
    return f"{delta:+,.0f}" if delta else "0"


def gate_lines(gates: list[GateScore]) -> list[str]:
    lines = []
    for score in gates:
        lines.append(
            f"  {score.gate}: false positives {score.false_positives} of {score.labelled_sound} sound "
            f"({_share(score.false_positive_rate)}), missed {score.labelled_real - score.caught} of "
            f"{score.labelled_real} real ({_share(score.miss_rate)})"
            + (f", {score.not_evaluated} not evaluated" if score.not_evaluated else "")
        )
    return lines


def source_line(report: SourceReport) -> str:
    if report.error is not None:
        return f"{report.run}: failed: {report.error}"
    dropped = ", ".join(f"{gate} {count}" for gate, count in sorted(report.dropped_by_gate.items()))
    entities = (
        f", entities {report.entities_recovered}/{report.accepted_entities} recovered"
        f" ({report.entities_created} new, {report.entities_updated} updated)"
        if report.accepted_entities or report.entities_created or report.entities_updated
        else ""
    )
    return (
        f"{report.run}: {report.recovered}/{report.accepted} recovered, {report.committed} committed{entities}"
        f"{f', dropped: {dropped}' if dropped else ''}, {report.flagged_items} flagged, {report.derived} derived, "
        f"evidence found {report.evidence_found}/{report.evidence_items}, {report.prompt_tokens} prompt tokens, "
        f"{report.reasks} re-ask(s), {report.seconds:.1f}s"
    )


def text_report(evaluation: Evaluation, per_source: bool = True) -> str:
    lines = [f"{evaluation.name} ({'replay: the accepted claims as the answer' if evaluation.replay else 'live'})"]
    if per_source:
        lines += [source_line(report) for report in evaluation.sources]
        lines.append("")
    width = max(len(label) for label, _ in ROWS)
    lines += [f"{label:<{width}}  {_value(evaluation.totals, field)}" for label, field in ROWS]
    dropped = ", ".join(f"{gate} {count}" for gate, count in evaluation.totals.dropped_by_gate.items()) or "none"
    lines.append(f"{'claims dropped, by gate':<{width}}  {dropped}")
    if evaluation.gates:
        lines += ["labelled gate decisions:", *gate_lines(evaluation.gates)]
    lines += [f"left out: {problem}" for problem in evaluation.problems]
    return "\n".join(lines) + "\n"


def comparison(a: Evaluation, b: Evaluation) -> str:
    """Both configurations' totals in columns, and the difference (second minus first)."""
    width = max(len(label) for label, _ in ROWS)
    head_a, head_b = a.name[-28:], b.name[-28:]
    column = max(14, len(head_a), len(head_b))
    lines = [f"{'':<{width}}  {head_a:>{column}}  {head_b:>{column}}  {'difference':>12}"]
    for label, field in ROWS:
        lines.append(
            f"{label:<{width}}  {_value(a.totals, field):>{column}}  {_value(b.totals, field):>{column}}  "
            f"{_difference(a.totals, b.totals, field):>12}"
        )
    gates = sorted(set(a.totals.dropped_by_gate) | set(b.totals.dropped_by_gate))
    for gate in gates:
        x, y = a.totals.dropped_by_gate.get(gate, 0), b.totals.dropped_by_gate.get(gate, 0)
        label = f"dropped by {gate}"
        lines.append(f"{label:<{width}}  {x:>{column}}  {y:>{column}}  {y - x:>+12}")
    for name, evaluation in (("first", a), ("second", b)):
        if evaluation.gates:
            lines += [f"labelled gate decisions, {name} ({evaluation.name}):", *gate_lines(evaluation.gates)]
    changed = _changed_sources(a, b)
    if changed:
        lines += ["sources whose recovered claims differ:", *changed]
    return "\n".join(lines) + "\n"


def _changed_sources(a: Evaluation, b: Evaluation) -> list[str]:
    second = {report.run: report for report in b.sources}
    lines = []
    for report in a.sources:
        other = second.get(report.run)
        if other is not None and other.recovered != report.recovered:
            lines.append(f"  {report.run}: {report.recovered} -> {other.recovered} of {report.accepted}")
    return lines


def as_json(evaluations: list[Evaluation]) -> dict[str, Any]:
    def one(evaluation: Evaluation) -> dict[str, Any]:
        data = evaluation.model_dump(mode="json", exclude={"sources": {"__all__": {"judged", "titles_by_stem"}}})
        data["gates"] = [
            {**score.model_dump(), "false_positive_rate": score.false_positive_rate, "miss_rate": score.miss_rate}
            for score in evaluation.gates
        ]
        return data

    if len(evaluations) == 1:
        return one(evaluations[0])
    return {"configurations": [one(e) for e in evaluations]}
