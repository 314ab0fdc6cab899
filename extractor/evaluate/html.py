"""The evaluation as one self-contained HTML page with charts (matplotlib, drawn as inline SVG).

matplotlib is an optional dependency (``pip install 'extractor[report]'``); it is imported only here,
and only when a page is asked for.
"""

from __future__ import annotations

import io
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from extractor.core.errors import ExtractorError
from extractor.evaluate.report import ROWS, Evaluation, _difference, _value

TEMPLATES = Path(__file__).parent / "templates"


class ReportError(ExtractorError):
    """The HTML report cannot be made here (matplotlib is missing)."""


def _pyplot():  # noqa: ANN202 - matplotlib.pyplot, imported here only
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ReportError("--html needs matplotlib: pip install 'extractor[report]'") from exc
    return plt


def _svg(figure: object) -> Markup:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")  # type: ignore[attr-defined]
    text = buffer.getvalue()
    return Markup(text[text.index("<svg") :])  # the XML prologue and doctype are not valid inside HTML


def charts(evaluations: list[Evaluation]) -> list[tuple[str, Markup]]:
    """Titled SVG charts: claims dropped by gate, recovered share per source, prompt tokens, labelled gates."""
    plt = _pyplot()
    made: list[tuple[str, Markup]] = []
    names = [e.name for e in evaluations]
    width = 0.8 / len(evaluations)

    gates = sorted({gate for e in evaluations for gate in e.totals.dropped_by_gate}) or ["none"]
    figure, axes = plt.subplots(figsize=(7, 3))
    for n, evaluation in enumerate(evaluations):
        counts = [evaluation.totals.dropped_by_gate.get(gate, 0) for gate in gates]
        axes.bar([i + n * width for i in range(len(gates))], counts, width, label=evaluation.name)
    axes.set_xticks([i + width * (len(evaluations) - 1) / 2 for i in range(len(gates))], gates, rotation=20)
    axes.set_ylabel("claims dropped")
    axes.legend(fontsize=8)
    made.append(("Claims dropped, by gate", _svg(figure)))
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(7, 3))
    for evaluation in evaluations:
        shares = sorted(r.recovered / r.accepted for r in evaluation.sources if r.accepted and r.error is None)
        axes.plot(range(len(shares)), shares, marker=".", label=evaluation.name)
    axes.set_xlabel("sources, sorted")
    axes.set_ylabel("accepted claims recovered")
    axes.set_ylim(0, 1.05)
    axes.legend(fontsize=8)
    made.append(("Recovered share per source", _svg(figure)))
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(7, 3))
    tokens = [[r.prompt_tokens for r in e.sources if r.error is None] for e in evaluations]
    if any(tokens):
        axes.hist(tokens, bins=20, label=names)
        axes.legend(fontsize=8)
    axes.set_xlabel("prompt tokens per source, all requests")
    axes.set_ylabel("sources")
    made.append(("Prompt tokens per source", _svg(figure)))
    plt.close(figure)

    labelled = [e for e in evaluations if e.gates]
    if labelled:
        figure, axes = plt.subplots(figsize=(7, 3))
        gate_names = sorted({s.gate for e in labelled for s in e.gates})
        step = 0.8 / (2 * len(labelled))
        for n, evaluation in enumerate(labelled):
            by_gate = {s.gate: s for s in evaluation.gates}
            for k, (what, rate) in enumerate((("false positives", "false_positive_rate"), ("misses", "miss_rate"))):
                values = [getattr(by_gate[g], rate) if g in by_gate else 0.0 for g in gate_names]
                offset = (2 * n + k) * step
                axes.bar([i + offset for i in range(len(gate_names))], values, step, label=f"{evaluation.name}: {what}")
        axes.set_xticks([i + 0.4 - step / 2 for i in range(len(gate_names))], gate_names)
        axes.set_ylabel("share of labelled decisions")
        axes.legend(fontsize=8)
        made.append(("Labelled gate decisions", _svg(figure)))
        plt.close(figure)
    return made


def html_report(evaluations: list[Evaluation]) -> str:
    environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["j2"]))
    rows = [
        (label, [_value(e.totals, field) for e in evaluations],
         _difference(evaluations[0].totals, evaluations[1].totals, field) if len(evaluations) == 2 else "")
        for label, field in ROWS
    ]  # fmt: skip
    return environment.get_template("eval.html.j2").render(evaluations=evaluations, rows=rows,
                                                           charts=charts(evaluations))  # fmt: skip
