"""The SVG charts: well-formed, escaped, with axes and units, one named mark per value."""

import xml.etree.ElementTree as ET

import pytest

from callgrid_portal import charts

SVG = "{http://www.w3.org/2000/svg}"


def _svg(markup: str) -> ET.Element:
    """The chart's <svg> element, parsed as XML: markup that is not well-formed fails here."""
    root = ET.fromstring(f"<div>{markup}</div>")
    found = root.find(f".//{SVG}svg")
    assert found is not None
    return found


def _marks(svg: ET.Element) -> list[ET.Element]:
    return [g for g in svg.iter(f"{SVG}g") if g.get("class") == "mark"]


def _texts(svg: ET.Element) -> list[str]:
    return [t.text or "" for t in svg.iter(f"{SVG}text")]


@pytest.mark.parametrize(
    ("maximum", "expected"),
    [
        (0, [0, 1]),
        (-3, [0, 1]),
        (7, [0, 2, 4, 6, 8]),
        (100, [0, 25, 50, 75, 100]),
        (101, [0, 50, 100, 150]),
        (0.9, [0, 0.25, 0.5, 0.75, 1]),
        (12_345, [0, 5000, 10_000, 15_000]),
    ],
)
def test_nice_ticks_cover_the_maximum_in_round_steps(maximum, expected):
    assert charts.nice_ticks(maximum) == expected


def test_formatters_say_the_unit():
    assert charts.fmt_count(12345) == "12,345"
    assert charts.fmt_percent(0.425) == "42%"
    assert charts.fmt_percent(1) == "100%"
    assert charts.fmt_ms(850) == "850 ms"
    assert charts.fmt_ms(12_000) == "12 s"


def test_combo_chart_has_a_mark_per_bucket_both_axes_and_breaks_the_line_on_empty_buckets():
    markup = charts.combo_chart(
        title="Bids and acceptance per hour",
        labels=["10:00", "11:00", "12:00", "13:00"],
        bars=[120, 0, 40, 80],
        line=[0.5, None, 0.25, 1.0],
        x_unit="hour (UTC)",
    )
    svg = _svg(markup)
    assert svg.get("aria-label") == "Bids and acceptance per hour"
    marks = _marks(svg)
    assert [m.get("aria-label") for m in marks] == [
        "10:00: 120 bids, acceptance 50%",
        "11:00: 0 bids, no bids",
        "12:00: 40 bids, acceptance 25%",
        "13:00: 80 bids, acceptance 100%",
    ]
    # Hover text and focus: every mark has a <title> and is in the tab order.
    assert all(m.find(f"{SVG}title") is not None and m.get("tabindex") == "0" for m in marks)
    texts = _texts(svg)
    assert {"bids", "Acceptance", "hour (UTC)", "0%", "100%", "150"} <= set(texts)
    # The empty bucket splits the acceptance line in two.
    assert len(list(svg.iter(f"{SVG}polyline"))) == 2
    assert 'class="legend"' in markup and "Acceptance</li>" in markup


def test_labels_and_names_are_escaped():
    markup = charts.hbars(
        title='<script>alert("x")</script>',
        rows=[('<b onclick="x">&', 3, "3 bids")],
    )
    assert "<script>" not in markup and "<b " not in markup
    svg = _svg(markup)
    assert svg.get("aria-label") == '<script>alert("x")</script>'
    [mark] = _marks(svg)
    assert mark.get("aria-label") == '<b onclick="x">&: 3 bids'


def test_stacked_bars_stack_each_series_and_fold_the_ninth_into_other():
    series = [(f"code {n}", [n, 0]) for n in range(1, 11)]
    markup = charts.stacked_bars(title="Codes per hour", labels=["a", "b"], series=series)
    svg = _svg(markup)
    first, empty = _marks(svg)
    label = first.get("aria-label") or ""
    assert label.startswith("a: code 1 1; code 2 2")
    # Codes 8, 9 and 10 are one "Other" series of 27.
    assert label.endswith("code 7 7; Other 27")
    assert empty.get("aria-label") == "b: no bids"
    colours = {r.get("class") for r in first.iter(f"{SVG}rect")} - {"hit"}
    assert colours == {f"bar s{i}" for i in range(8)}
    assert markup.count("<li>") == 8


def test_stacked_bar_heights_add_up_to_the_total():
    svg = _svg(charts.stacked_bars(title="t", labels=["x"], series=[("A", [30]), ("B", [10])]))
    [mark] = _marks(svg)
    heights = [
        float(r.get("height") or 0) for r in mark.iter(f"{SVG}rect") if r.get("class") != "hit"
    ]
    plot = charts.HEIGHT - charts.TOP - charts.BOTTOM
    # Total 40 on an axis to 40: the stack fills the plot.
    assert sum(heights) == pytest.approx(plot, abs=0.2)
    assert heights[0] == pytest.approx(3 * heights[1], abs=0.2)


def test_histogram_marks_the_timeout_and_draws_what_is_past_it_as_cut_off():
    edges = [0, 100, 200, 300, 400, 500, 1000, 2000, 3000]
    counts = [0, 5, 10, 0, 0, 0, 0, 2, 1]
    markup = charts.histogram(
        title="Response times", edges=edges, counts=counts, marker=2000, marker_label="timeout 2 s"
    )
    svg = _svg(markup)
    marks = _marks(svg)
    labels = [m.get("aria-label") or "" for m in marks]
    assert sum(int(label.split(": ")[1].split()[0]) for label in labels) == 18
    past = [label for label in labels if "past the timeout" in label]
    # The 2 bids of 2-3 s and the 1 of 3 s and more are past the 2 s timeout; none before.
    assert sum(int(label.split(": ")[1].split()[0]) for label in past) == 3
    assert all(not label.startswith("1,") for label in past)
    marker = next(g for g in svg.iter(f"{SVG}g") if g.get("class") == "marker")
    line = marker.find(f"{SVG}line")
    assert line is not None
    x = float(line.get("x1") or 0)
    assert charts.LEFT < x < charts.WIDTH - charts.RIGHT
    assert "timeout 2 s" in _texts(svg)
    assert "response time" in _texts(svg)


def test_histogram_of_nothing_still_draws_axes():
    svg = _svg(charts.histogram(title="none", edges=[0, 10], counts=[0, 0]))
    assert all("0 bids" in (m.get("aria-label") or "") for m in _marks(svg))
    assert "0" in _texts(svg)


def test_sparkline_is_named_and_skips_missing_points():
    markup = charts.sparkline([1, None, 3, 0], label="Acme: 4 bids in 24 h")
    svg = _svg(markup)
    assert svg.get("role") == "img"
    assert svg.get("aria-label") == "Acme: 4 bids in 24 h"
    title = svg.find(f"{SVG}title")
    assert title is not None and title.text == "Acme: 4 bids in 24 h"
    polyline = svg.find(f"{SVG}polyline")
    assert polyline is not None and len((polyline.get("points") or "").split()) == 3


def test_sparkline_of_zeros_is_flat():
    svg = _svg(charts.sparkline([0, 0, 0], label="quiet"))
    polyline = svg.find(f"{SVG}polyline")
    assert polyline is not None
    ys = {point.split(",")[1] for point in (polyline.get("points") or "").split()}
    assert len(ys) == 1
