"""Charts as server-rendered SVG: pure functions from series to escaped markup.

Why SVG from the server rather than a chart library: the pages need five kinds of chart
(volume with acceptance, stacked bars, a histogram with a marker, horizontal bars and
sparklines), all static once drawn. SVG written here needs no script, no build step and no
file from outside the project, so it works under the Content-Security-Policy
(``script-src 'self'``, no inline style: colours come from classes in ``portal.css``) and
costs a few kilobytes per page.

Every chart has axes with units, a name (``aria-label``), and one focusable mark per value
with a ``<title>``: the browser shows it on hover, a screen reader reads it on focus, and
``portal.css`` outlines the focused mark. Callers pass labels already formatted (times in
the page's zone) and get a :class:`~django.utils.safestring.SafeString`; every text that
came in is escaped here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

from django.utils.safestring import SafeString, mark_safe

# The drawing area, in SVG user units; the SVG scales to its box (portal.css).
WIDTH = 640
HEIGHT = 240
LEFT = 60
RIGHT = 56
TOP = 26
BOTTOM = 40
# At most this many labels under the time axis, so they never overlap.
MAX_X_LABELS = 6
# Series colours: classes s0..s7 in portal.css; a stacked chart with more series folds the
# rest into "Other".
SERIES_CLASSES = 8
HISTOGRAM_BINS = 24

Formatter = Callable[[float], str]


def fmt_count(value: float) -> str:
    """A count with thousands separators: ``12,345``; fractions get one decimal."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def fmt_percent(value: float) -> str:
    """A share (0..1) as a whole percent: ``0.425`` → ``43%``."""
    return f"{round(value * 100)}%"


def fmt_ms(value: float) -> str:
    """Milliseconds, as seconds from 10 s up: ``850 ms``, ``12 s``."""
    if value >= 10_000:
        return f"{value / 1000:g} s"
    return f"{int(value):,} ms"


def nice_ticks(maximum: float, count: int = 4) -> list[float]:
    """Axis ticks from 0 to at least ``maximum`` in steps of 1, 2, 2.5 or 5 x 10^n.

    A maximum of 0 or less gives ``[0, 1]`` so an empty chart still has an axis.
    """
    if not maximum or maximum <= 0 or not math.isfinite(maximum):
        return [0.0, 1.0]
    raw = maximum / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = magnitude * 10
    for multiple in (1, 2, 2.5, 5, 10):
        if multiple * magnitude >= raw:
            step = multiple * magnitude
            break
    steps = math.ceil(maximum / step - 1e-9)
    return [round(index * step, 10) for index in range(steps + 1)]


def _attr(text: str) -> str:
    return escape(text, quote=True)


def _num(value: float) -> str:
    """A coordinate with at most one decimal: smaller markup, same picture."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _svg(title: str, body: list[str], *, width: int = WIDTH, height: int = HEIGHT) -> str:
    return (
        f'<svg class="chart-svg" viewBox="0 0 {width} {height}" role="group" '
        f'aria-label="{_attr(title)}" xmlns="http://www.w3.org/2000/svg">'
        + "".join(body)
        + "</svg>"
    )


def _mark(text: str, shapes: str) -> str:
    """One value: focusable, named for screen readers, with a hover title."""
    label = _attr(text)
    return (
        f'<g class="mark" tabindex="0" role="img" aria-label="{label}">'
        f"<title>{escape(text)}</title>{shapes}</g>"
    )


def _y_axis(
    ticks: list[float], fmt: Formatter, unit: str, *, right: bool = False, plot_width: float
) -> str:
    """Tick labels and grid lines of a vertical axis, and its unit at the top."""
    plot_height = HEIGHT - TOP - BOTTOM
    top = ticks[-1] or 1
    x = LEFT + plot_width + 6 if right else LEFT - 6
    anchor = "start" if right else "end"
    parts = []
    for tick in ticks:
        y = TOP + plot_height - tick / top * plot_height
        if not right:
            parts.append(
                f'<line class="grid" x1="{LEFT}" x2="{_num(LEFT + plot_width)}" '
                f'y1="{_num(y)}" y2="{_num(y)}"/>'
            )
        parts.append(
            f'<text class="tick" x="{_num(x)}" y="{_num(y + 4)}" text-anchor="{anchor}">'
            f"{escape(fmt(tick))}</text>"
        )
    unit_x = LEFT + plot_width + RIGHT - 4 if right else 4
    parts.append(
        f'<text class="unit" x="{_num(unit_x)}" y="12" '
        f'text-anchor="{"end" if right else "start"}">{escape(unit)}</text>'
    )
    return "".join(parts)


def _x_labels(labels: Sequence[str], centres: Sequence[float], unit: str) -> str:
    """A few evenly spaced labels under the bars, and the axis's unit under them."""
    count = len(labels)
    parts = [
        f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{HEIGHT - BOTTOM}" '
        f'y2="{HEIGHT - BOTTOM}"/>'
    ]
    if count:
        every = max(1, math.ceil(count / MAX_X_LABELS))
        for index in range(0, count, every):
            parts.append(
                f'<text class="tick" x="{_num(centres[index])}" y="{HEIGHT - BOTTOM + 14}" '
                f'text-anchor="middle">{escape(labels[index])}</text>'
            )
    if unit:
        parts.append(
            f'<text class="unit" x="{WIDTH - RIGHT}" y="{HEIGHT - 6}" text-anchor="end">'
            f"{escape(unit)}</text>"
        )
    return "".join(parts)


def _slots(count: int, plot_width: float) -> tuple[float, float]:
    """Width of one category slot and of the bar inside it."""
    slot = plot_width / max(count, 1)
    return slot, max(slot * 0.8, 1.0)


def _legend(names: Sequence[str], classes: Sequence[str]) -> str:
    items = "".join(
        f'<li><span class="swatch {css}" aria-hidden="true"></span>{escape(name)}</li>'
        for name, css in zip(names, classes, strict=True)
    )
    return f'<ul class="legend">{items}</ul>'


def _figure(svg: str, legend: str = "") -> SafeString:
    return mark_safe(
        f'<figure class="chart-box">{svg}{legend}</figure>'
    )  # every text in it was escaped


def combo_chart(
    *,
    title: str,
    labels: Sequence[str],
    bars: Sequence[int],
    line: Sequence[float | None],
    bar_name: str = "Bids",
    line_name: str = "Acceptance",
    bar_unit: str = "bids",
    x_unit: str = "",
) -> SafeString:
    """Volume as bars (left axis, counts) and a share as a line (right axis, 0-100 %) on one
    time axis; a bucket whose share is ``None`` (no bids) breaks the line."""
    count = len(labels)
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    ticks = nice_ticks(max(bars, default=0))
    top = ticks[-1]
    slot, bar_width = _slots(count, plot_width)
    body = [
        '<g class="axes" aria-hidden="true">',
        _y_axis(ticks, fmt_count, bar_unit, plot_width=plot_width),
        _y_axis([0, 0.25, 0.5, 0.75, 1], fmt_percent, line_name, right=True, plot_width=plot_width),
        _x_labels(labels, [LEFT + slot * (i + 0.5) for i in range(count)], x_unit),
        "</g>",
    ]
    marks, segments, current = [], [], []
    for index, (label, volume, share) in enumerate(zip(labels, bars, line, strict=True)):
        x = LEFT + slot * index + (slot - bar_width) / 2
        height = volume / top * plot_height
        centre = LEFT + slot * (index + 0.5)
        text = f"{label}: {fmt_count(volume)} {bar_unit}, " + (
            f"{line_name.lower()} {fmt_percent(share)}" if share is not None else f"no {bar_unit}"
        )
        shapes = (
            f'<rect class="bar s0" x="{_num(x)}" y="{_num(TOP + plot_height - height)}" '
            f'width="{_num(bar_width)}" height="{_num(max(height, 0))}"/>'
        )
        if share is not None:
            y = TOP + plot_height - share * plot_height
            current.append(f"{_num(centre)},{_num(y)}")
            shapes += f'<circle class="dot s1" cx="{_num(centre)}" cy="{_num(y)}" r="3"/>'
        elif current:
            segments.append(current)
            current = []
        shapes += (
            f'<rect class="hit" x="{_num(x)}" y="{TOP}" width="{_num(bar_width)}" '
            f'height="{_num(plot_height)}"/>'
        )
        marks.append(_mark(text, shapes))
    if current:
        segments.append(current)
    lines = "".join(
        f'<polyline class="line s1" points="{" ".join(points)}"/>' for points in segments
    )
    body += [f'<g aria-hidden="true">{lines}</g>', *marks]
    legend = _legend([bar_name, line_name], ["s0", "s1 line-swatch"])
    return _figure(_svg(title, body), legend)


def stacked_bars(
    *,
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[int]]],
    unit: str = "bids",
    x_unit: str = "",
) -> SafeString:
    """Counts per category, one stacked bar per label; series past the eighth are summed
    into "Other" so every colour means one thing."""
    if len(series) > SERIES_CLASSES:
        head = list(series[: SERIES_CLASSES - 1])
        folded = [values for _, values in series[SERIES_CLASSES - 1 :]]
        rest = [sum(values) for values in zip(*folded, strict=True)]
        series = [*head, ("Other", rest)]
    count = len(labels)
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    totals = [sum(values[i] for _, values in series) for i in range(count)]
    ticks = nice_ticks(max(totals, default=0))
    top = ticks[-1]
    slot, bar_width = _slots(count, plot_width)
    body = [
        '<g class="axes" aria-hidden="true">',
        _y_axis(ticks, fmt_count, unit, plot_width=plot_width),
        _x_labels(labels, [LEFT + slot * (i + 0.5) for i in range(count)], x_unit),
        "</g>",
    ]
    for index, label in enumerate(labels):
        x = LEFT + slot * index + (slot - bar_width) / 2
        base: float = TOP + plot_height
        shapes, parts = [], []
        for position, (name, values) in enumerate(series):
            value = values[index]
            if not value:
                continue
            height = value / top * plot_height
            base -= height
            shapes.append(
                f'<rect class="bar s{position}" x="{_num(x)}" y="{_num(base)}" '
                f'width="{_num(bar_width)}" height="{_num(height)}"/>'
            )
            parts.append(f"{name} {fmt_count(value)}")
        text = f"{label}: " + ("; ".join(parts) if parts else f"no {unit}")
        # An empty bucket still gets a (transparent) mark so its label can be read too.
        shapes.append(
            f'<rect class="hit" x="{_num(x)}" y="{TOP}" width="{_num(bar_width)}" '
            f'height="{_num(plot_height)}"/>'
        )
        body.append(_mark(text, "".join(shapes)))
    legend = _legend([name for name, _ in series], [f"s{i}" for i in range(len(series))])
    return _figure(_svg(title, body), legend)


def _rebin(
    edges: Sequence[int], counts: Sequence[int], marker: float | None
) -> tuple[list[int], float, int]:
    """Counts in bins with lower ``edges`` redrawn as equal-width bins from 0 to a little past
    the larger of the marker and the last value: the bins, their width and the last value."""
    highest = max((edge for edge, n in zip(edges, counts, strict=True) if n), default=0)
    span = max(float(marker or 0), highest + (highest // 10 or 10), 100.0) * 1.1
    step = nice_ticks(span / HISTOGRAM_BINS, 1)[-1]
    bins = [0] * max(1, math.ceil(span / step))
    for index, (edge, number) in enumerate(zip(edges, counts, strict=True)):
        if not number:
            continue
        upper = edges[index + 1] if index + 1 < len(edges) else edge
        middle = (edge + upper) / 2
        bins[min(int(middle // step), len(bins) - 1)] += number
    return bins, step, highest


def _histogram_axes(ticks: list[float], extent: float, unit: str) -> list[str]:
    """The y axis of counts and the x axis of response times, from 0 to ``extent`` ms."""
    plot_width = WIDTH - LEFT - RIGHT
    axis = [
        '<g class="axes" aria-hidden="true">',
        _y_axis(ticks, fmt_count, unit, plot_width=plot_width),
        f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{HEIGHT - BOTTOM}" '
        f'y2="{HEIGHT - BOTTOM}"/>',
    ]
    for tick in nice_ticks(extent, 5):
        if tick > extent:
            break
        x = LEFT + tick / extent * plot_width
        axis.append(
            f'<text class="tick" x="{_num(x)}" y="{HEIGHT - BOTTOM + 14}" '
            f'text-anchor="middle">{escape(fmt_ms(tick))}</text>'
        )
    axis.append(
        f'<text class="unit" x="{WIDTH - RIGHT}" y="{HEIGHT - 6}" text-anchor="end">'
        "response time</text></g>"
    )
    return axis


def _histogram_bars(
    bins: list[int], step: float, highest: int, top: float, marker: float | None, unit: str
) -> list[str]:
    """One bar per bin, each with its text; bins past ``marker`` are drawn as cut off."""
    plot_height = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT - RIGHT) / len(bins)
    bars = []
    for index, number in enumerate(bins):
        low, high = index * step, (index + 1) * step
        cut = marker is not None and low >= marker
        height = number / top * plot_height
        x = LEFT + slot * index
        text = f"{fmt_ms(low)} to {fmt_ms(high)}: {fmt_count(number)} {unit}"
        if index == len(bins) - 1 and highest >= high:
            text = f"{fmt_ms(low)} or more: {fmt_count(number)} {unit}"
        bars.append(
            _mark(
                text + (" (past the timeout)" if cut else ""),
                f'<rect class="bar {"s3" if cut else "s0"}" x="{_num(x + 0.5)}" '
                f'y="{_num(TOP + plot_height - height)}" width="{_num(max(slot - 1, 1))}" '
                f'height="{_num(height)}"/>'
                f'<rect class="hit" x="{_num(x)}" y="{TOP}" width="{_num(slot)}" '
                f'height="{_num(plot_height)}"/>',
            )
        )
    return bars


def histogram(
    *,
    title: str,
    edges: Sequence[int],
    counts: Sequence[int],
    marker: float | None = None,
    marker_label: str = "",
    unit: str = "bids",
) -> SafeString:
    """Counts of values (ms) in bins with lower ``edges`` (the last bin open-ended), redrawn as
    equal-width bins from 0 to a little past the larger of the marker and the last value, with
    a dashed line at ``marker`` (a timeout); bins past the marker are drawn as cut off."""
    bins, step, highest = _rebin(edges, counts, marker)
    ticks = nice_ticks(max(bins))
    extent = step * len(bins)
    body = _histogram_axes(ticks, extent, unit)
    body += _histogram_bars(bins, step, highest, ticks[-1], marker, unit)
    legend = ""
    if marker is not None:
        x = LEFT + min(marker / extent, 1) * (WIDTH - LEFT - RIGHT)
        body.append(
            f'<g class="marker" aria-hidden="true"><line x1="{_num(x)}" x2="{_num(x)}" '
            f'y1="{TOP}" y2="{HEIGHT - BOTTOM}"/>'
            f'<text class="tick" x="{_num(x - 4)}" y="{TOP + 10}" text-anchor="end">'
            f"{escape(marker_label)}</text></g>"
        )
        legend = _legend(
            [f"within {marker_label}", "past it", marker_label],
            ["s0", "s3", "marker-swatch"],
        )
    return _figure(_svg(title, body), legend)


def hbars(
    *,
    title: str,
    rows: Sequence[tuple[str, float, str]],
    classes: Sequence[str] | None = None,
    unit: str = "bids",
) -> SafeString:
    """One horizontal bar per row ``(label, value, value as text)``, longest first as given;
    ``classes`` colours each row (``s0``..``s7``); no rows, a sentence saying so (an empty
    drawing would scroll at phone width with nothing in it to reach by keyboard)."""
    if not rows:
        return mark_safe(
            f'<figure class="chart-box empty"><figcaption class="helptext">{escape(title)}: '
            "nothing to chart in this range.</figcaption></figure>"
        )  # the title was escaped
    row_height, label_width, text_width = 22, 170, 170
    height = TOP + row_height * max(len(rows), 1) + 24
    plot_width = WIDTH - label_width - text_width
    top = nice_ticks(max((value for _, value, _ in rows), default=0))[-1]
    body = [
        f'<text class="unit" x="{WIDTH - 4}" y="{height - 6}" text-anchor="end" '
        f'aria-hidden="true">{escape(unit)}</text>'
    ]
    for index, (label, value, shown) in enumerate(rows):
        y = TOP + index * row_height
        css = classes[index] if classes else "s0"
        short = label if len(label) <= 26 else label[:25] + "…"
        body.append(
            _mark(
                f"{label}: {shown}",
                f'<text class="tick" x="{label_width - 6}" y="{y + 15}" text-anchor="end">'
                f"{escape(short)}</text>"
                f'<rect class="bar {css}" x="{label_width}" y="{y + 3}" '
                f'width="{_num(max(value / top * plot_width, 1 if value else 0))}" height="16"/>'
                f'<text class="tick" x="{_num(label_width + value / top * plot_width + 6)}" '
                f'y="{y + 15}">{escape(shown)}</text>',
            )
        )
    return _figure(_svg(title, body, height=height))


def sparkline(values: Sequence[float | None], *, label: str, width: int = 120) -> SafeString:
    """A small line of ``values`` (``None``: no data) without axes, named by ``label``, which
    is also its hover text; an all-zero series is a flat line at the bottom."""
    height, pad = 28, 2
    numbers = [v for v in values if v is not None]
    top = max(numbers, default=0) or 1
    step = (width - 2 * pad) / max(len(values) - 1, 1)
    points = " ".join(
        f"{_num(pad + i * step)},{_num(height - pad - (v / top) * (height - 2 * pad))}"
        for i, v in enumerate(values)
        if v is not None
    )
    text = _attr(label)
    return mark_safe(  # every text in it was escaped
        f'<svg class="sparkline" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{text}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(label)}</title>"
        f'<polyline class="line s0" points="{points}"/></svg>'
    )


__all__ = [
    "combo_chart",
    "fmt_count",
    "fmt_ms",
    "fmt_percent",
    "hbars",
    "histogram",
    "nice_ticks",
    "sparkline",
    "stacked_bars",
]
