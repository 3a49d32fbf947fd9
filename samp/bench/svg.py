"""Hand-written SVG charts for the dashboard: no JavaScript, no CDN, so the page works offline and in any
browser. Every chart is an ``<svg class="plot">`` with a ``data-kind`` attribute the dashboard test looks for."""
from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Sequence

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
           "#bcbd22")


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


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


def line_chart(lines: Sequence[Line], *, title: str, x_label: str, y_label: str, kind: str,
               x_tick_labels: dict[float, str] | None = None, width: int = 520, height: int = 320) -> str:
    """A line/scatter chart with axes, ticks, a legend and a ``<title>`` tooltip on every point."""
    points = [p for line in lines for p in line.points]
    if not points:
        raise ValueError(f"chart {title!r} has no points")
    left, top, bottom = 58, 30, 46
    right = 40 + 6 * max(len(line.label) for line in lines)
    width += max(0, right - 150)
    height = max(height, top + bottom + 16 * len(lines) + 8)
    plot_w, plot_h = width - left - right, height - top - bottom
    xs, ys = [p[0] for p in points], [p[1] for p in points]
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
    for index, line in enumerate(lines):
        coords = [(sx(x), sy(y)) for x, y in line.points]
        if line.draw_line and len(coords) > 1:
            path = " ".join(f"{'M' if i == 0 else 'L'}{_number(x)},{_number(y)}" for i, (x, y) in enumerate(coords))
            dash = ' stroke-dasharray="5 4"' if line.dashed else ""
            out.append(f'<path d="{path}" class="series" stroke="{line.colour}"{dash}/>')
        for position, ((x, y), (vx, vy)) in enumerate(zip(coords, line.points)):
            fill = "white" if line.hollow else line.colour
            tip = f"{line.label}: x={vx:.4g}, y={vy:.4g}"
            if line.hollow:
                out.append(f'<rect x="{_number(x - 4)}" y="{_number(y - 4)}" width="8" height="8" fill="{fill}" '
                           f'stroke="{line.colour}" stroke-width="1.5" transform="rotate(45 {_number(x)} {_number(y)})">'
                           f'<title>{escape(tip)}</title></rect>')
            else:
                out.append(f'<circle cx="{_number(x)}" cy="{_number(y)}" r="3.5" fill="{fill}" stroke="{line.colour}">'
                           f'<title>{escape(tip)}</title></circle>')
            if position < len(line.flagged) and line.flagged[position]:
                out.append(f'<circle cx="{_number(x)}" cy="{_number(y)}" r="8" class="regression">'
                           f'<title>{escape("regression: " + tip)}</title></circle>')
    # Measured series first in the legend, published (open) markers after them.
    for index, line in enumerate(sorted(lines, key=lambda line: line.hollow)):
        legend_y = top + 12 + index * 16
        marker = (f'<rect x="{width - right + 14}" y="{legend_y - 4}" width="8" height="8" fill="white" '
                  f'stroke="{line.colour}"/>' if line.hollow else
                  f'<line x1="{width - right + 10}" x2="{width - right + 26}" y1="{legend_y}" y2="{legend_y}" '
                  f'stroke="{line.colour}" stroke-width="2"/>')
        out.append(marker + f'<text x="{width - right + 32}" y="{legend_y + 4}" class="legend">'
                   f'{escape(line.label)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def _heat_colour(value: float, scale: float) -> str:
    """White at 0, red for degradation, green for improvement; saturates at ``scale``."""
    strength = min(abs(value) / scale, 1.0) if scale > 0 else 0.0
    fade = round(255 * (1 - 0.85 * strength))
    return f"rgb(255,{fade},{fade})" if value > 0 else f"rgb({fade},255,{fade})"


def heatmap(rows: Sequence[str], columns: Sequence[str], values: Sequence[Sequence[float | None]], *, title: str,
            kind: str, scale: float = 1.0, cell_w: int = 64, cell_h: int = 24) -> str:
    """A table-like heat map; ``values[r][c]`` is a relative degradation (0.25 = 25 % worse), ``None`` blank."""
    if not rows or not columns:
        raise ValueError(f"heatmap {title!r} needs at least one row and one column")
    if len(values) != len(rows) or any(len(row) != len(columns) for row in values):
        raise ValueError("heatmap values must be len(rows) x len(columns)")
    left, top = 170, 36 + round(0.66 * 6.2 * max(len(column) for column in columns))
    width, height = left + cell_w * len(columns) + 80, top + cell_h * len(rows) + 10
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
                out.append(f'<rect x="{x}" y="{y}" width="{cell_w}" height="{cell_h}" class="empty"/>')
                continue
            out.append(f'<rect x="{x}" y="{y}" width="{cell_w}" height="{cell_h}" fill="{_heat_colour(value, scale)}" '
                       f'class="cell"><title>{escape(f"{row} / {columns[c]}: {100 * value:+.1f}%")}</title></rect>'
                       f'<text x="{x + cell_w / 2:.1f}" y="{y + cell_h / 2 + 4:.1f}" class="value" '
                       f'text-anchor="middle">{100 * value:+.0f}%</text>')
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
