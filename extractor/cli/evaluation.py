"""``extractor eval``: the evaluation of one or two configurations printed or written."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import nullcontext

from pydantic import BaseModel

from extractor.core.errors import ExtractorError
from extractor.core.settings import Settings, load_settings
from extractor.evaluate.evaluation import Judge, evaluate_run, run_index, totals
from extractor.evaluate.labels import Label, load_labels, score_labels
from extractor.evaluate.report import Evaluation, as_json, comparison, text_report
from extractor.evaluate.runs import RecordedRun, load_runs
from extractor.kb.index import KBIndex
from extractor.llm.client import StructuredClient, make_client
from extractor.llm.connect import endpoint_pool
from extractor.llm.endpoint import llm_endpoint

JUDGE_PROMPT = (
    "Two claims from a knowledge base follow, each a title and a description. Say whether they state the "
    'same proposition (the same thing could be cited for both). Reply with JSON: {"same": true} or '
    '{"same": false}.'
)


class SameClaim(BaseModel):
    same: bool


def model_judge(llm: StructuredClient) -> Judge:
    def judge(draft: tuple[str, str], accepted: tuple[str, str]) -> bool:
        text = f"A: {draft[0]}\n{draft[1]}\n\nB: {accepted[0]}\n{accepted[1]}"
        messages = [{"role": "system", "content": JUDGE_PROMPT}, {"role": "user", "content": text}]
        return llm.ask(messages, SameClaim).value.same

    return judge


def evaluate(
    name: str, settings: Settings, runs: list[RecordedRun], full: KBIndex, labels: list[Label], args: argparse.Namespace
) -> Evaluation:
    """One configuration over every run; the model (the embedded one, or an endpoint) is started only if used."""
    needs_model = not args.replay or args.judge
    reports = []
    with llm_endpoint(settings) if needs_model else nullcontext(settings) as live:
        llm = StructuredClient(make_client(live), live, pool=endpoint_pool(None, live)) if needs_model else None
        judge = model_judge(llm) if llm is not None and args.judge else None
        for number, run in enumerate(runs, start=1):
            reports.append(evaluate_run(run, live, run_index(full, run), None if args.replay else llm, judge))
            if not args.json and sys.stderr.isatty():
                print(f"\r{name}: {number}/{len(runs)} runs", end="", file=sys.stderr)
    if not args.json and sys.stderr.isatty():
        print(file=sys.stderr)
    return Evaluation(name=name, replay=args.replay, sources=reports, totals=totals(reports, args.replay),
                      gates=score_labels(labels, reports), problems=[])  # fmt: skip


def run_eval(args: argparse.Namespace) -> tuple[str, int]:
    """What to print and the exit code; raises :class:`ExtractorError` for what stops it from starting."""
    if not args.runs.is_dir():
        raise ExtractorError(f"{args.runs}: not a folder of recorded runs")
    kb = args.kb or (args.runs.parent / "kb")
    if args.kb is not None and not kb.is_dir():
        raise ExtractorError(f"{kb}: not a folder")
    runs, problems = load_runs(args.runs)
    runs = [run for run in runs if run.accepted or run.entities or run.entity_updates][: args.limit]
    if not runs:
        left_out = f"; {len(problems)} left out, first {problems[0]}" if problems else ""
        raise ExtractorError(f"{args.runs}: no recorded run with an accepted claim or entity note{left_out}")
    full = KBIndex.load(kb) if kb.is_dir() else KBIndex(kb, [])
    configs = [(str(args.config) if args.config else "settings", args.config)]
    if args.against is not None:
        configs.append((str(args.against), args.against))
    labels = load_labels(args.labels) if args.labels else []  # read once, before any model is started
    evaluations = []
    for name, path in configs:
        settings = load_settings(kb if kb.is_dir() else None, path)
        evaluations.append(evaluate(name, settings, runs, full, labels, args).model_copy(update={"problems": problems}))
    if args.html is not None:
        from extractor.evaluate.html import html_report  # matplotlib is loaded only for the page

        try:
            args.html.write_text(html_report(evaluations), encoding="utf-8")
        except OSError as exc:
            raise ExtractorError(f"{args.html}: cannot write: {exc.strerror or exc}") from exc
    if args.json:
        return json.dumps(as_json(evaluations)) + "\n", 0
    if len(evaluations) == 2:
        return comparison(*evaluations), 0
    return text_report(evaluations[0], per_source=not args.quiet), 0
