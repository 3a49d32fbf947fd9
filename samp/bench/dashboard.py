"""The static dashboard: one self-contained HTML file (inline CSS and SVG, no script, no network) built from a
records history.

Per model and metric (WER/CER or accuracy): a Pareto plot of the score against kept tokens and against prefill
time (one line per method, each method with its own colour and marker, the uncompressed ``base`` run as a dashed
reference line, the published points of the budget files as open markers), a method × dataset heat map of the
difference to ``base`` in percentage points with its colour legend, compression time beside prefill time, a table
of the exact numbers (score, CI, coverage flagged below 100 %, tokens kept, stage times), and, where a series has
more than one run, its history with regressions ringed in red. Optionally, pictures of which tokens utterances kept
and merged (from ``Compressed.assignment``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Mapping, Sequence

from samp.bench.budgets import BudgetTable, ResultKey, metric_family_of
from samp.bench.history import Series, build_history
from samp.bench.observations import Observation, latest_by_key
from samp.bench.svg import (
    REFERENCE_COLOUR,
    Line,
    Reference,
    assignment_strip,
    bar_pairs,
    colour,
    heatmap,
    line_chart,
    marker,
)

BASE_METHOD = "base"
_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 18px; border-bottom: 1px solid #ccc; padding-bottom: 4px; margin-top: 32px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
svg.plot { background: #fff; border: 1px solid #e3e3e3; }
svg .title { font-size: 13px; font-weight: 600; } svg .tick, svg .legend { font-size: 10px; fill: #444; }
svg .label { font-size: 11px; fill: #222; } svg .value { font-size: 10px; fill: #222; }
svg .frame { fill: none; stroke: #999; } svg .grid { stroke: #eee; } svg .axis { stroke: #999; }
svg .series { fill: none; stroke-width: 1.8; } svg .regression { fill: none; stroke: #d00; stroke-width: 2; }
svg .empty { fill: #f6f6f6; stroke: #fff; } svg .cell { stroke: #fff; }
table { border-collapse: collapse; font-size: 13px; } td, th { border: 1px solid #ddd; padding: 3px 8px; }
th { background: #f3f3f3; } .bad { color: #c00; font-weight: 600; } .note { color: #666; font-size: 12px; }
table.numbers td.number { text-align: right; font-variant-numeric: tabular-nums; }
.coverage-warning { background: #fff4f4; border-left: 3px solid #c00; padding: 4px 8px; }
"""


def _data_label(key: ResultKey) -> str:
    return key.dataset if key.subset is None else f"{key.dataset}/{key.subset}"


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


@dataclass(frozen=True)
class _Group:
    method: str
    keep_ratio: float
    observations: tuple[Observation, ...]


def _groups(latest: Sequence[Observation], datasets: set[str]) -> list[_Group]:
    grouped: dict[tuple[str, float], list[Observation]] = {}
    for observation in latest:
        if _data_label(observation.key) in datasets:
            grouped.setdefault((observation.key.method, observation.key.keep_ratio), []).append(observation)
    return [_Group(method, ratio, tuple(obs)) for (method, ratio), obs in sorted(grouped.items())]


def _common_datasets(latest: Sequence[Observation]) -> tuple[set[str], bool]:
    """Datasets every method × ratio measured, so averages compare like with like; all datasets if none is common."""
    by_group: dict[tuple[str, float], set[str]] = {}
    for observation in latest:
        by_group.setdefault((observation.key.method, observation.key.keep_ratio), set()).add(_data_label(observation.key))
    common = set.intersection(*by_group.values()) if by_group else set()
    if common:
        return common, True
    return set().union(*by_group.values()), False


def _style(method: str, methods: list[str]) -> tuple[str, str]:
    """A method's colour and marker, the same in every chart; ``base`` is the grey reference, not a series."""
    index = [m for m in methods if m != BASE_METHOD].index(method)
    return colour(index), marker(index)


def _pareto(model: str, family: str, latest: Sequence[Observation], budgets: BudgetTable | None,
            methods: list[str]) -> list[str]:
    datasets, comparable = _common_datasets(latest)
    groups = _groups(latest, datasets)
    y_label = ("mean WER/CER %" if family == "error_rate" else "mean accuracy %") + f" over {len(datasets)} set(s)"
    kept_lines, prefill_lines = [], []
    published_lines: list[Line] = []
    kept_references, prefill_references = [], []
    for group in (g for g in groups if g.method == BASE_METHOD and g.keep_ratio == 1.0):
        score = 100 * _mean([o.value for o in group.observations])
        kept_references.append(Reference(f"{BASE_METHOD} (uncompressed) {score:.2f}", score))
        prefill_references.append(kept_references[-1])
        prefill = [o.seconds_per_item("prefill") for o in group.observations]
        if all(p is not None for p in prefill):
            prefill_references.append(Reference(f"{BASE_METHOD} prefill {1000 * _mean(prefill):.3g} ms",
                                                1000 * _mean(prefill), axis="x"))
    for method in methods:
        mine = sorted((g for g in groups if g.method == method), key=lambda g: g.keep_ratio)
        if not mine or method == BASE_METHOD:
            continue
        kept_points, prefill_points = [], []
        for group in mine:
            score = 100 * _mean([o.value for o in group.observations])
            fractions = [o.kept_fraction for o in group.observations]
            kept = _mean(fractions) if all(f is not None for f in fractions) else group.keep_ratio
            kept_points.append((kept, score))
            prefill = [o.seconds_per_item("prefill") for o in group.observations]
            if all(p is not None for p in prefill):
                prefill_points.append((1000 * _mean(prefill), score))
        hue, shape = _style(method, methods)
        kept_lines.append(Line(method, tuple(kept_points), hue, marker=shape))
        if prefill_points:  # in keep-ratio order, like the kept-tokens line
            prefill_lines.append(Line(method, tuple(prefill_points), hue, marker=shape))
    if budgets is not None:
        for method in methods:
            rows = [b for b in budgets.select(model=model, method=method, metric_family=family)
                    if _data_label(b.key) in datasets]
            by_ratio: dict[float, list[float]] = {}
            for budget in rows:
                by_ratio.setdefault(budget.key.keep_ratio, []).append(budget.published)
            # Only average the published rows over exactly the measured sets, else the two would not compare.
            points = tuple((ratio, _mean(values)) for ratio, values in sorted(by_ratio.items())
                           if len(values) == len(datasets))
            if points:
                hue, shape = (REFERENCE_COLOUR, "circle") if method == BASE_METHOD else _style(method, methods)
                published_lines.append(Line(f"{method} published", points, hue, hollow=True, draw_line=False,
                                            marker=shape))
    charts = []
    # Published first so this run's points are drawn on top of the seed's.
    if kept_lines or published_lines:
        charts.append(line_chart(published_lines + kept_lines, title=f"{model}: score vs kept tokens",
                                 x_label="kept tokens (fraction of input)", y_label=y_label, kind="pareto-kept",
                                 references=kept_references, x_span=(0.0, 1.0)))
    if prefill_lines:
        charts.append(line_chart(prefill_lines, title=f"{model}: score vs prefill time",
                                 x_label="prefill ms per utterance (mean over sets)", y_label=y_label,
                                 kind="pareto-prefill", references=prefill_references))
    if not comparable:
        charts.append('<p class="note">No dataset was measured by every method × ratio: '
                      'averages span different sets.</p>')
    return charts


def _heatmap(model: str, family: str, latest: Sequence[Observation], methods: list[str]) -> str | None:
    base = {(_data_label(o.key)): o.value for o in latest if o.key.method == BASE_METHOD}
    if not base:
        return None
    columns = sorted({_data_label(o.key) for o in latest})
    rows = sorted({(o.key.method, o.key.keep_ratio) for o in latest if o.key.method != BASE_METHOD},
                  key=lambda row: (methods.index(row[0]), row[1]))
    if not rows:
        return None
    values_by = {(o.key.method, o.key.keep_ratio, _data_label(o.key)): o.value for o in latest}
    matrix = []
    for method, ratio in rows:
        line = []
        for column in columns:
            value, reference = values_by.get((method, ratio, column)), base.get(column)
            if value is None or reference is None:
                line.append(None)
                continue
            # Percentage points, positive = worse: a relative change blows up against a 1.56 % base.
            points = 100 * (value - reference)
            line.append(points if family == "error_rate" else -points)
        matrix.append(line)
    spread = max((abs(v) for line in matrix for v in line if v is not None), default=0.0)
    what = "WER/CER" if family == "error_rate" else "accuracy"
    return heatmap([f"{method} r{ratio:g}" for method, ratio in rows], columns, matrix,
                   title=f"{model}: {what} minus {BASE_METHOD}, points (red = worse)", kind="heatmap",
                   scale=spread or 1.0, blank_note=f"blank: not measured, or no {BASE_METHOD} run on that set")


def _milliseconds(observation: Observation, stage: str) -> float | None:
    seconds = observation.seconds_per_item(stage)
    return None if seconds is None else 1000 * seconds


def _stage_times(model: str, latest: Sequence[Observation], methods: list[str]) -> str | None:
    """Compression beside prefill, per method × keep ratio (mean ms per utterance over its sets)."""
    groups: dict[tuple[str, float], list[Observation]] = {}
    for observation in latest:
        groups.setdefault((observation.key.method, observation.key.keep_ratio), []).append(observation)
    rows, values = [], []
    for (method, ratio) in sorted(groups, key=lambda row: (methods.index(row[0]), row[1])):
        pair = []
        for stage in ("compress", "prefill"):
            times = [_milliseconds(o, stage) for o in groups[(method, ratio)]]
            pair.append(_mean(times) if times and all(t is not None for t in times) else None)
        if pair != [None, None]:
            rows.append(f"{method} r{ratio:g}")
            values.append(tuple(pair))
    if not rows:
        return None
    return bar_pairs(rows, values, title=f"{model}: compression vs prefill time", kind="stage-times",
                     names=("compress", "prefill"), unit="ms per utterance")


def _percent(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{100 * value:.{digits}f}"


def _numbers_table(latest: Sequence[Observation], methods: list[str]) -> str:
    """The exact numbers behind the charts, one row per result; coverage below 100 % is flagged."""
    header = ("method", "keep", "dataset", "metric", "score %", "95% CI", "coverage %", "items", "tokens in → out",
              "kept %", "compress ms", "prefill ms")
    rows = []
    for o in sorted(latest, key=lambda o: (methods.index(o.key.method), -o.key.keep_ratio, _data_label(o.key))):
        ci = "-" if o.ci is None else f"{_percent(o.ci[0])}–{_percent(o.ci[1])}"
        low_coverage = o.coverage is not None and o.coverage < 1.0
        coverage = (f'<td class="number bad" title="failed items count as errors">⚠ {_percent(o.coverage, 1)}</td>'
                    if low_coverage else f'<td class="number">{_percent(o.coverage, 1)}</td>')
        tokens = "-" if o.tokens_in is None or o.tokens_out is None else f"{o.tokens_in:,.0f} → {o.tokens_out:,.0f}"
        times = [_milliseconds(o, stage) for stage in ("compress", "prefill")]
        cells = [escape(o.key.method), f"{o.key.keep_ratio:g}", escape(_data_label(o.key)), escape(o.metric)]
        numbers = [_percent(o.value), ci]
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells)
                    + "".join(f'<td class="number">{cell}</td>' for cell in numbers) + coverage
                    + f'<td class="number">{o.n_items if o.n_items is not None else "-"}</td>'
                    + f'<td class="number">{tokens}</td><td class="number">{_percent(o.kept_fraction, 1)}</td>'
                    + "".join(f'<td class="number">{"-" if t is None else f"{t:.3g}"}</td>' for t in times)
                    + "</tr>")
    return ('<table class="numbers"><tr>' + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr>"
            + "".join(rows) + "</table>")


def _coverage_warning(latest: Sequence[Observation]) -> str | None:
    low = [o for o in latest if o.coverage is not None and o.coverage < 1.0]
    if not low:
        return None
    shown = ", ".join(f"{o.key.method} r{o.key.keep_ratio:g} {_data_label(o.key)} ({_percent(o.coverage, 1)} %)"
                      for o in low[:5]) + (" …" if len(low) > 5 else "")
    return (f'<p class="coverage-warning">⚠ {len(low)} result(s) with coverage below 100 %: their failed items count '
            f'as errors, so the scores are not comparable with complete runs: {escape(shown)}.</p>')


def _run_label(observation: Observation) -> str:
    if observation.git_sha:
        return observation.git_sha[:8]
    return (observation.timestamp or "?")[:16]


def _history(model: str, series: Sequence[Series], methods: list[str]) -> list[str]:
    runs: dict[str, str] = {}
    for one in series:
        for point in one.points:
            label = _run_label(point.observation)
            runs[label] = min(runs.get(label, point.observation.timestamp or ""), point.observation.timestamp or "")
    order = {label: position for position, label in enumerate(sorted(runs, key=lambda label: (runs[label], label)))}
    charts = []
    by_config: dict[tuple[str, float], list[Series]] = {}
    for one in series:
        by_config.setdefault((one.key.method, one.key.keep_ratio), []).append(one)
    for (method, ratio) in sorted(by_config, key=lambda config: (methods.index(config[0]), config[1])):
        lines = []
        for index, one in enumerate(sorted(by_config[(method, ratio)], key=lambda s: _data_label(s.key))):
            points = tuple((float(order[_run_label(p.observation)]), 100 * p.observation.value) for p in one.points)
            lines.append(Line(_data_label(one.key), points, colour(index),
                              flagged=tuple(p.regressed for p in one.points)))
        used = sorted({x for line in lines for x, _ in line.points})
        labels = {x: label for label, position in order.items() for x in used if position == x}
        charts.append(line_chart(lines, title=f"{model}: {method} r{ratio:g} over runs", x_label="run (git sha)",
                                 y_label="score %", kind="history", x_tick_labels=labels))
    return charts


def _regression_table(series: Sequence[Series]) -> str:
    rows = []
    for one in series:
        previous = None
        for point in one.points:
            if point.regressed and previous is not None:
                rows.append(f"<tr><td>{escape(one.key.label())}</td><td>{escape(one.metric)}</td>"
                            f"<td>{100 * previous.value:.2f}</td><td class=\"bad\">{100 * point.observation.value:.2f}</td>"
                            f"<td>{escape(_run_label(point.observation))}</td></tr>")
            previous = point.observation
    if not rows:
        return '<p class="regressions-none">No regressions in the history.</p>'
    return ('<table class="regressions"><tr><th>result</th><th>metric</th><th>before %</th><th>after %</th>'
            f'<th>run</th></tr>{"".join(rows)}</table>')


def render_dashboard(observations: Sequence[Observation], *, budgets: BudgetTable | None = None,
                     assignments: Mapping[str, Sequence[int]] | None = None, tolerance: float = 0.005,
                     title: str = "samp benchmarks") -> str:
    """The page as a string. ``tolerance`` (a fraction) is the history's regression tolerance."""
    if not observations:
        raise ValueError("the history has no records; nothing to draw")
    series = build_history(observations, tolerance)
    latest = latest_by_key(observations)
    methods = sorted({o.key.method for o in observations}, key=lambda m: (m != BASE_METHOD, m))
    if budgets is not None:
        methods += sorted({b.key.method for b in budgets} - set(methods))
    # The newest record's time, not the wall clock: the same history always gives the same page.
    newest = max((o.timestamp for o in observations if o.timestamp), default="unknown")
    runs = {_run_label(o) for o in observations}
    body = [f"<h1>{escape(title)}</h1>",
            f'<p class="note">{len(observations)} records, {len(runs)} run(s), {len(series)} series; '
            f'newest record {escape(newest)}. '
            f'Scores in percent; regressions: worse than the previous run by more than {100 * tolerance:g} points '
            f'and outside its confidence interval.</p>',
            "<h2>Regressions</h2>", _regression_table(series)]
    if assignments:
        body.append('<h2>Which tokens one utterance kept and merged</h2><div class="grid">')
        body.extend(assignment_strip(assignment, title=label) for label, assignment in assignments.items())
        body.append("</div>")
    for model in sorted({o.key.model for o in observations}):
        body.append(f'<section class="model"><h2>{escape(model)}</h2>')
        model_latest = [o for key, o in latest.items() if key.model == model]
        for family in ("error_rate", "accuracy"):
            family_latest = [o for o in model_latest if metric_family_of(o.metric) == family]
            if not family_latest:
                continue
            body.append(f"<h3>{'WER / CER' if family == 'error_rate' else 'accuracy'}</h3><div class=\"grid\">")
            body.extend(_pareto(model, family, family_latest, budgets, methods))
            heat = _heatmap(model, family, family_latest, methods)
            if heat is not None:
                body.append(heat)
            stages = _stage_times(model, family_latest, methods)
            if stages is not None:
                body.append(stages)
            body.append("</div>")
            warning = _coverage_warning(family_latest)
            if warning is not None:
                body.append(warning)
            body.append("<h3>the numbers</h3>" + _numbers_table(family_latest, methods))
            # History only where there is some: a series measured in one run has nothing to draw over time.
            with_history = [s for s in series if s.key.model == model and metric_family_of(s.metric) == family
                            and len(s.points) > 1]
            if with_history:
                body.append("<h3>history</h3><div class=\"grid\">")
                body.extend(_history(model, with_history, methods))
                body.append("</div>")
            else:
                body.append('<p class="note history-none">History: every result here was measured in one run; '
                            'the history over runs appears once a result has been measured again.</p>')
        body.append("</section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def assignment_row(assignment, length: int | None = None, item: int = 0) -> list[int]:
    """One utterance of a ``Compressed.assignment`` (``[B, N]`` tensor or nested list), cut to its valid length."""
    rows = assignment.tolist() if hasattr(assignment, "tolist") else list(assignment)
    if not rows:
        raise ValueError("assignment is empty")
    row = rows[item] if isinstance(rows[0], list) else rows
    if length is not None:
        if not 0 < length <= len(row):
            raise ValueError(f"length {length} outside 1..{len(row)}")
        row = row[:length]
    return [int(slot) for slot in row]


def read_assignments(path: str | Path) -> dict[str, list[int]]:
    """``{label: [slot, ...]}`` from JSON (slots: output slot per input token, ``-1`` pruned)."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"assignment file not found: {path}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error.msg})") from error
    if not isinstance(document, dict) or not document:
        raise ValueError(f"{path}: expected an object mapping a label to a list of slots")
    out = {}
    for label, slots in document.items():
        if not isinstance(slots, list) or not slots or not all(isinstance(s, int) and s >= -1 for s in slots):
            raise ValueError(f"{path}: {label!r} must be a non-empty list of integers >= -1")
        out[str(label)] = slots
    return out


def write_dashboard(observations: Sequence[Observation], out_dir: str | Path, **options) -> Path:
    """Write ``index.html`` into ``out_dir`` (created) and return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    page = out_dir / "index.html"
    page.write_text(render_dashboard(observations, **options), encoding="utf-8")
    return page
