"""Hand-written SVG charts for the dashboard: no JavaScript, no CDN, so the page works offline and in any
browser. Every chart is an ``<svg class="plot">`` with a ``data-kind`` attribute the dashboard test looks for."""
from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Sequence

# Nineteen colours a reader tells apart (no grey: grey is the uncompressed reference) and seven marker shapes; a
# series takes colour and marker by its index, so two series share neither up to 19 series, and never both up to
# 133.
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#6baed6", "#fd8d3c", "#74c476", "#9e9ac8",
           "#f7b6d2")
MARKERS = ("circle", "square", "triangle", "diamond", "triangle-down", "plus", "cross")
REFERENCE_COLOUR = "#555555"


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def marker(index: int) -> str:
    return MARKERS[index % len(MARKERS)]


def marker_svg(shape: str, x: float, y: float, fill: str, stroke: str, tip: str = "", size: float = 4.0) -> str:
    """One point marker centred on (x, y), with a tooltip."""
    title = f"<title>{escape(tip)}</title>" if tip else ""
    paint = f'fill="{fill}" stroke="{stroke}" stroke-width="1.5" class="marker" data-marker="{shape}"'
    if shape == "circle":
        return f'<circle cx="{_number(x)}" cy="{_number(y)}" r="{size}" {paint}>{title}</circle>'
    if shape == "square":
        return (f'<rect x="{_number(x - size)}" y="{_number(y - size)}" width="{2 * size}" height="{2 * size}" '
                f'{paint}>{title}</rect>')
    if shape == "diamond":
        corners = [(x, y - size * 1.3), (x + size * 1.3, y), (x, y + size * 1.3), (x - size * 1.3, y)]
    elif shape == "triangle":
        corners = [(x, y - size * 1.3), (x + size * 1.2, y + size), (x - size * 1.2, y + size)]
    elif shape == "triangle-down":
        corners = [(x, y + size * 1.3), (x + size * 1.2, y - size), (x - size * 1.2, y - size)]
    elif shape == "plus":
        arm, w = size * 1.3, size * 0.45
        corners = [(x - w, y - arm), (x + w, y - arm), (x + w, y - w), (x + arm, y - w), (x + arm, y + w),
                   (x + w, y + w), (x + w, y + arm), (x - w, y + arm), (x - w, y + w), (x - arm, y + w),
                   (x - arm, y - w), (x - w, y - w)]
    elif shape == "cross":
        a, w = size * 1.1, size * 0.5
        corners = [(x - a, y - a + w), (x - a + w, y - a), (x, y - w), (x + a - w, y - a), (x + a, y - a + w),
                   (x + w, y), (x + a, y + a - w), (x + a - w, y + a), (x, y + w), (x - a + w, y + a),
                   (x - a, y + a - w), (x - w, y)]
    else:
        raise ValueError(f"unknown marker {shape!r}; expected one of {', '.join(MARKERS)}")
    points = " ".join(f"{_number(cx)},{_number(cy)}" for cx, cy in corners)
    return f'<polygon points="{points}" {paint}>{title}</polygon>'


def _number(value: float) -> str:
    return f"{value:.1f}"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"axis range must be finite, got {low}..{high}")
    if high <= low:
        high = low + (abs(low) * 0.1 or 1.0)
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _format_tick(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


@dataclass(frozen=True)
class Line:
    label: str
    points: tuple[tuple[float, float], ...]
    colour: str
    dashed: bool = False
    hollow: bool = False              # published points: open markers
    flagged: tuple[bool, ...] = ()    # per point: draw a red ring (a regression)
    draw_line: bool = True
    marker: str = "circle"


@dataclass(frozen=True)
class Reference:
    """A horizontal (``axis="y"``) or vertical (``axis="x"``) dashed line across a chart: the uncompressed run."""

    label: str
    value: float
    axis: str = "y"


def line_chart(lines: Sequence[Line], *, title: str, x_label: str, y_label: str, kind: str,
               x_tick_labels: dict[float, str] | None = None, width: int = 520, height: int = 320,
               references: Sequence[Reference] = (), x_span: tuple[float, float] | None = None) -> str:
    """A line/scatter chart with axes, ticks, a legend (marker and colour of every series, then the reference
    lines), and a ``<title>`` tooltip on every point."""
    points = [p for line in lines for p in line.points]
    if not points:
        raise ValueError(f"chart {title!r} has no points")
    left, top, bottom = 58, 30, 46
    labels = [line.label for line in lines] + [reference.label for reference in references]
    right = 40 + 6 * max(len(label) for label in labels)
    width += max(0, right - 150)
    width = max(width, left + 8 * len(title) + 10)
    height = max(height, top + bottom + 16 * len(labels) + 8)
    plot_w, plot_h = width - left - right, height - top - bottom
    # x_span: values the axis must reach even without a point there (the whole 0..1 of kept tokens)
    xs = [p[0] for p in points] + [r.value for r in references if r.axis == "x"] + list(x_span or ())
    ys = [p[1] for p in points] + [r.value for r in references if r.axis == "y"]
    x_ticks = sorted(x_tick_labels) if x_tick_labels else nice_ticks(min(xs), max(xs))
    y_ticks = nice_ticks(min(ys), max(ys))
    x0, x1 = min(x_ticks[0], min(xs)), max(x_ticks[-1], max(xs))
    y0, y1 = y_ticks[0], y_ticks[-1]
    if x1 == x0:
        x0, x1 = x0 - 0.5, x1 + 0.5

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        return top + plot_h - (y - y0) / (y1 - y0) * plot_h

    out = [f'<svg class="plot" data-kind="{escape(kind)}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
           f'<text x="{left}" y="18" class="title">{escape(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" class="frame"/>']
    for tick in y_ticks:
        y = sy(tick)
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{_number(y)}" y2="{_number(y)}" class="grid"/>'
                   f'<text x="{left - 6}" y="{_number(y + 4)}" class="tick" text-anchor="end">{_format_tick(tick)}</text>')
    for tick in x_ticks:
        x = sx(tick)
        label = x_tick_labels.get(tick, "") if x_tick_labels else _format_tick(tick)
        out.append(f'<line x1="{_number(x)}" x2="{_number(x)}" y1="{top + plot_h}" y2="{top + plot_h + 4}" class="axis"/>'
                   f'<text x="{_number(x)}" y="{top + plot_h + 16}" class="tick" text-anchor="middle">{escape(label)}</text>')
    out.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 8}" class="label" text-anchor="middle">{escape(x_label)}</text>')
    out.append(f'<text transform="translate(14 {top + plot_h / 2:.1f}) rotate(-90)" class="label" '
               f'text-anchor="middle">{escape(y_label)}</text>')
    for reference in references:
        if reference.axis == "y":
            y = _number(sy(reference.value))
            end = f'x1="{left}" x2="{left + plot_w}" y1="{y}" y2="{y}"'
        else:
            x = _number(sx(reference.value))
            end = f'x1="{x}" x2="{x}" y1="{top}" y2="{top + plot_h}"'
        out.append(f'<line {end} stroke="{REFERENCE_COLOUR}" stroke-width="1.5" stroke-dasharray="6 4" '
                   f'class="reference"><title>{escape(reference.label)}</title></line>')
    for index, line in enumerate(lines):
        coords = [(sx(x), sy(y)) for x, y in line.points]
        if line.draw_line and len(coords) > 1:
            path = " ".join(f"{'M' if i == 0 else 'L'}{_number(x)},{_number(y)}" for i, (x, y) in enumerate(coords))
            dash = ' stroke-dasharray="5 4"' if line.dashed else ""
            out.append(f'<path d="{path}" class="series" stroke="{line.colour}"{dash}/>')
        for position, ((x, y), (vx, vy)) in enumerate(zip(coords, line.points)):
            fill = "white" if line.hollow else line.colour
            tip = f"{line.label}: x={vx:.4g}, y={vy:.4g}"
            out.append(marker_svg(line.marker, x, y, fill, line.colour, tip))
            if position < len(line.flagged) and line.flagged[position]:
                out.append(f'<circle cx="{_number(x)}" cy="{_number(y)}" r="8" class="regression">'
                           f'<title>{escape("regression: " + tip)}</title></circle>')
    # Measured series first in the legend, published (open) markers after them, the references last.
    legend_x = width - right
    entries = sorted(lines, key=lambda line: line.hollow)
    for index, line in enumerate(entries):
        legend_y = top + 12 + index * 16
        stroke = (f'<line x1="{legend_x + 8}" x2="{legend_x + 28}" y1="{legend_y}" y2="{legend_y}" '
                  f'stroke="{line.colour}" stroke-width="2"/>' if line.draw_line else "")
        kind = "legend-entry published" if line.hollow else "legend-entry"
        out.append(f'<g class="{kind}" data-colour="{line.colour}" data-marker="{line.marker}">' + stroke
                   + marker_svg(line.marker, legend_x + 18, legend_y, "white" if line.hollow else line.colour,
                                line.colour)
                   + f'<text x="{legend_x + 34}" y="{legend_y + 4}" class="legend">{escape(line.label)}</text></g>')
    for index, reference in enumerate(references, start=len(entries)):
        legend_y = top + 12 + index * 16
        out.append(f'<g class="legend-entry reference-entry"><line x1="{legend_x + 8}" x2="{legend_x + 28}" '
                   f'y1="{legend_y}" y2="{legend_y}" stroke="{REFERENCE_COLOUR}" stroke-width="1.5" '
                   f'stroke-dasharray="6 4"/><text x="{legend_x + 34}" y="{legend_y + 4}" class="legend">'
                   f'{escape(reference.label)}</text></g>')
    out.append("</svg>")
    return "\n".join(out)


def _heat_colour(value: float, scale: float) -> str:
    """White at 0, red for worse, green for better; saturates at ``scale``."""
    strength = min(abs(value) / scale, 1.0) if scale > 0 else 0.0
    fade = round(255 * (1 - 0.85 * strength))
    return f"rgb(255,{fade},{fade})" if value > 0 else f"rgb({fade},255,{fade})"


def heatmap(rows: Sequence[str], columns: Sequence[str], values: Sequence[Sequence[float | None]], *, title: str,
            kind: str, scale: float = 1.0, cell_w: int = 72, cell_h: int = 24, unit: str = "pts",
            blank_note: str = "blank: not measured") -> str:
    """A table-like heat map; ``values[r][c]`` is a difference in percentage points (positive = worse), ``None``
    blank. A colour legend from ``-scale`` to ``+scale`` and what a blank cell means are drawn under it."""
    if not rows or not columns:
        raise ValueError(f"heatmap {title!r} needs at least one row and one column")
    if len(values) != len(rows) or any(len(row) != len(columns) for row in values):
        raise ValueError("heatmap values must be len(rows) x len(columns)")
    left = 12 + 6 * max(len(row) for row in rows)
    top = 36 + round(0.66 * 6.2 * max(len(column) for column in columns))
    legend_h = 54
    width = max(left + cell_w * len(columns) + 80, 8 * len(title) + 12, left + 330)
    height = top + cell_h * len(rows) + 10 + legend_h
    out = [f'<svg class="plot" data-kind="{escape(kind)}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
           f'<text x="4" y="18" class="title">{escape(title)}</text>']
    for c, column in enumerate(columns):
        x = left + c * cell_w + cell_w / 2
        out.append(f'<text transform="translate({x:.1f} {top - 6}) rotate(-40)" class="tick">{escape(column)}</text>')
    for r, row in enumerate(rows):
        y = top + r * cell_h
        out.append(f'<text x="{left - 6}" y="{y + cell_h / 2 + 4:.1f}" class="tick" text-anchor="end">{escape(row)}</text>')
        for c, value in enumerate(values[r]):
            x = left + c * cell_w
            if value is None:
                out.append(f'<rect x="{x}" y="{y}" width="{cell_w}" height="{cell_h}" class="empty">'
                           f'<title>{escape(f"{row} / {columns[c]}: {blank_note}")}</title></rect>')
                continue
            out.append(f'<rect x="{x}" y="{y}" width="{cell_w}" height="{cell_h}" fill="{_heat_colour(value, scale)}" '
                       f'class="cell"><title>{escape(f"{row} / {columns[c]}: {value:+.2f} {unit}")}</title></rect>'
                       f'<text x="{x + cell_w / 2:.1f}" y="{y + cell_h / 2 + 4:.1f}" class="value" '
                       f'text-anchor="middle">{value:+.1f}</text>')
    # The legend: a colour ramp from better to worse, its end values, and what a blank cell is.
    ramp_y, ramp_w, steps = top + cell_h * len(rows) + 14, 300, 30
    out.append('<g class="heat-legend">')
    for step in range(steps):
        value = scale * (2 * (step + 0.5) / steps - 1)
        out.append(f'<rect x="{left + step * ramp_w / steps:.1f}" y="{ramp_y}" width="{ramp_w / steps + 0.5:.1f}" '
                   f'height="10" fill="{_heat_colour(value, scale)}"/>')
    out.append(f'<text x="{left}" y="{ramp_y + 22}" class="legend">{-scale:+.1f} {unit} (better)</text>'
               f'<text x="{left + ramp_w / 2:.1f}" y="{ramp_y + 22}" class="legend" text-anchor="middle">0</text>'
               f'<text x="{left + ramp_w}" y="{ramp_y + 22}" class="legend" text-anchor="end">{scale:+.1f} {unit} '
               f'(worse)</text>'
               f'<rect x="{left}" y="{ramp_y + 30}" width="10" height="10" class="empty" stroke="#ccc"/>'
               f'<text x="{left + 14}" y="{ramp_y + 39}" class="legend">{escape(blank_note)}</text></g>')
    out.append("</svg>")
    return "\n".join(out)


def bar_pairs(rows: Sequence[str], values: Sequence[tuple[float | None, float | None]], *, title: str, kind: str,
              names: tuple[str, str], unit: str, colours: tuple[str, str] = ("#d62728", "#1f77b4"),
              bar_h: int = 9) -> str:
    """Two horizontal bars per row on one scale (e.g. compression and prefill milliseconds), values printed."""
    if not rows or len(values) != len(rows):
        raise ValueError(f"bar chart {title!r} needs one (a, b) pair per row")
    present = [v for pair in values for v in pair if v is not None]
    if not present:
        raise ValueError(f"bar chart {title!r} has no values")
    left = 12 + 6 * max(len(row) for row in rows)
    top, row_h, plot_w = 48, 2 * bar_h + 8, 300
    width = max(left + plot_w + 90, 8 * len(title) + 12, 40 + 7 * sum(len(name) + len(unit) + 8 for name in names))
    height = top + row_h * len(rows) + 10
    high = max(present) or 1.0
    out = [f'<svg class="plot" data-kind="{escape(kind)}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
           f'<text x="4" y="18" class="title">{escape(title)}</text>']
    x = 4
    for name, fill in zip(names, colours):
        out.append(f'<g class="legend-entry" data-colour="{fill}"><rect x="{x}" y="28" width="12" height="9" '
                   f'fill="{fill}"/><text x="{x + 16}" y="36" class="legend">{escape(name)} ({unit})</text></g>')
        x += 30 + 6 * len(f"{name} ({unit})")
    for r, (row, pair) in enumerate(zip(rows, values)):
        y = top + r * row_h
        out.append(f'<text x="{left - 6}" y="{y + bar_h + 3}" class="tick" text-anchor="end">{escape(row)}</text>')
        for index, (value, fill, name) in enumerate(zip(pair, colours, names)):
            bar_y = y + index * bar_h
            if value is None:
                out.append(f'<text x="{left + 2}" y="{bar_y + bar_h - 1}" class="value">{escape(name)}: not '
                           f'recorded</text>')
                continue
            length = max(plot_w * value / high, 1.0)
            out.append(f'<rect x="{left}" y="{bar_y}" width="{length:.1f}" height="{bar_h - 1}" fill="{fill}" '
                       f'class="bar"><title>{escape(f"{row}: {name} {value:.3g} {unit}")}</title></rect>'
                       f'<text x="{left + length + 4:.1f}" y="{bar_y + bar_h - 1}" class="value">{value:.3g}</text>')
    out.append("</svg>")
    return "\n".join(out)


def assignment_strip(assignment: Sequence[int], *, title: str, kind: str = "assignment", cell: int = 9,
                     per_row: int = 75) -> str:
    """One utterance's tokens in time order: a cell per input token, coloured by the output slot it went to
    (neighbouring slots alternate colours; slots holding several tokens are outlined), grey when pruned."""
    assignment = [int(slot) for slot in assignment]
    if not assignment:
        raise ValueError("assignment is empty")
    if any(slot < -1 for slot in assignment):
        raise ValueError("assignment slots must be >= -1 (-1 marks a pruned token)")
    sizes: dict[int, int] = {}
    for slot in assignment:
        if slot >= 0:
            sizes[slot] = sizes.get(slot, 0) + 1
    rows = math.ceil(len(assignment) / per_row)
    left, top = 4, 28
    width = left + per_row * cell + 8
    height = top + rows * (cell + 6) + 24
    kept, merged = len(sizes), sum(size for size in sizes.values() if size > 1)
    pruned = assignment.count(-1)
    out = [f'<svg class="plot" data-kind="{escape(kind)}" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
           f'<text x="{left}" y="18" class="title">{escape(title)}</text>']
    for position, slot in enumerate(assignment):
        x = left + (position % per_row) * cell
        y = top + (position // per_row) * (cell + 6)
        if slot < 0:
            fill, stroke, tip = "#d9d9d9", "#d9d9d9", f"token {position}: pruned"
        else:
            fill = ("#1f77b4", "#ff7f0e", "#2ca02c")[slot % 3]
            stroke = "#000" if sizes[slot] > 1 else fill
            tip = f"token {position}: slot {slot}" + (f" (merged with {sizes[slot] - 1} more)" if sizes[slot] > 1 else "")
        out.append(f'<rect x="{x}" y="{y}" width="{cell - 1}" height="{cell}" fill="{fill}" stroke="{stroke}" '
                   f'stroke-width="0.6" class="token"><title>{escape(tip)}</title></rect>')
    out.append(f'<text x="{left}" y="{height - 6}" class="legend">{len(assignment)} tokens in → {kept} kept slots; '
               f'{merged} tokens merged into shared slots (outlined), {pruned} pruned (grey)</text>')
    out.append("</svg>")
    return "\n".join(out)
