"""The dashboard's charts as inline SVG: drawn here from the figures, so the page needs no
script and nothing from the network. Pure: figures in, markup out.

Each mark carries its figure in ``data-*`` attributes and a ``<title>`` (the tooltip), so a
reader (or a test) can tell exactly what a bar or a point stands for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from markupsafe import Markup

WIDTH = 640
HEIGHT = 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 44, 10, 12, 40


def _esc(value: object) -> str:
    return escape(str(value), quote=True)


def _frame(title: str, body: list[str], kind: str) -> Markup:
    # Every text and attribute inside went through _esc.
    return Markup(  # noqa: S704
        f'<svg class="chart" data-chart="{_esc(kind)}" role="img" aria-label="{_esc(title)}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" preserveAspectRatio="xMidYMid meet" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{_esc(title)}</title>'
        + "".join(body)
        + "</svg>"
    )


def nice_max(value: float) -> float:
    """The top of the axis: ``value`` rounded up to 1, 2 or 5 times a power of ten."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)  # pragma: no cover - the loop always returns


def _axis(top: float, label: str) -> list[str]:
    plot_h = HEIGHT - _TOP - _BOTTOM
    parts = []
    for share in (0.0, 0.5, 1.0):
        y = _TOP + plot_h * (1 - share)
        figure = top * share
        text = f"{figure:.0%}" if label == "%" else f"{figure:g}"
        parts.append(
            f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#ddd" stroke-width="1"/>'
            f'<text x="{_LEFT - 4}" y="{y + 4:.1f}" font-size="11" text-anchor="end" '
            f'fill="#555">{_esc(text)}</text>'
        )
    return parts


def _x_labels(labels: Sequence[str], slot: float) -> list[str]:
    # Every label while they fit; otherwise every n-th, so they never overlap.
    every = max(1, math.ceil(len(labels) * 60 / (WIDTH - _LEFT - _RIGHT)))
    return [
        f'<text x="{_LEFT + slot * (i + 0.5):.1f}" y="{HEIGHT - _BOTTOM + 16}" font-size="11" '
        f'text-anchor="middle" fill="#333">{_esc(label)}</text>'
        for i, label in enumerate(labels)
        if i % every == 0
    ]


def stacked_bars(
    columns: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[int]]],
    *,
    title: str,
) -> Markup:
    """One bar per column, stacked from ``series``: (name, colour, one value per column)."""
    totals = [sum(values[i] for _, _, values in series) for i in range(len(columns))]
    top = nice_max(max(totals, default=0))
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    slot = plot_w / max(len(columns), 1)
    body = _axis(top, "")
    for i, column in enumerate(columns):
        y = float(_TOP + plot_h)
        for name, colour, values in series:
            value = values[i]
            if not value:
                continue
            h = plot_h * value / top
            y -= h
            body.append(
                f'<rect x="{_LEFT + slot * i + slot * 0.15:.1f}" y="{y:.1f}" '
                f'width="{slot * 0.7:.1f}" height="{h:.1f}" fill="{_esc(colour)}" '
                f'data-column="{_esc(column)}" data-series="{_esc(name)}" data-value="{value}">'
                f"<title>{_esc(column)}: {value} {_esc(name)}</title></rect>"
            )
        body.append(
            f'<text x="{_LEFT + slot * (i + 0.5):.1f}" y="{y - 3:.1f}" font-size="10" '
            f'text-anchor="middle" fill="#333" data-total="{totals[i]}">'
            f"{totals[i] or ''}</text>"
        )
    body += _x_labels(columns, slot)
    # The legend, on one line under the labels.
    x = float(_LEFT)
    for name, colour, values in series:
        if not any(values):
            continue
        body.append(
            f'<rect x="{x:.1f}" y="{HEIGHT - 14}" width="10" height="10" fill="{_esc(colour)}"/>'
            f'<text x="{x + 13:.1f}" y="{HEIGHT - 5}" font-size="10" fill="#333">'
            f"{_esc(name)}</text>"
        )
        x += 18 + 6.2 * len(name)
    return _frame(title, body, "stacked")


def bars(labels: Sequence[str], values: Sequence[int], *, title: str, colour: str) -> Markup:
    """One bar per label."""
    top = nice_max(max(values, default=0))
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    slot = plot_w / max(len(labels), 1)
    body = _axis(top, "")
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        h = plot_h * value / top
        y = _TOP + plot_h - h
        body.append(
            f'<rect x="{_LEFT + slot * i + slot * 0.1:.1f}" y="{y:.1f}" width="{slot * 0.8:.1f}" '
            f'height="{h:.1f}" fill="{_esc(colour)}" data-column="{_esc(label)}" '
            f'data-value="{value}"><title>{_esc(label)}: {value}</title></rect>'
            f'<text x="{_LEFT + slot * (i + 0.5):.1f}" y="{y - 3:.1f}" font-size="10" '
            f'text-anchor="middle" fill="#333">{value or ""}</text>'
        )
    body += _x_labels(labels, slot)
    return _frame(title, body, "bars")


def shares(labels: Sequence[str], values: Sequence[float | None], *, title: str) -> Markup:
    """A line of shares (0 to 1) over ``labels``; a gap where there is no figure."""
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    slot = plot_w / max(len(labels), 1)
    body = _axis(1.0, "%")
    points: list[tuple[float, float]] = []
    runs: list[list[tuple[float, float]]] = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        if value is None:
            if points:
                runs.append(points)
            points = []
            continue
        x, y = _LEFT + slot * (i + 0.5), _TOP + plot_h * (1 - value)
        points.append((x, y))
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#2a7" data-column="{_esc(label)}" '
            f'data-value="{value:.4f}"><title>{_esc(label)}: {value:.1%}</title></circle>'
        )
    if points:
        runs.append(points)
    for run in runs:
        if len(run) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
            body.insert(
                3, f'<polyline points="{path}" fill="none" stroke="#2a7" stroke-width="2"/>'
            )
    body += _x_labels(labels, slot)
    return _frame(title, body, "shares")
