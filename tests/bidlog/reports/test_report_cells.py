"""The report tables' cells are written in Python (ReportTable.cells); the page must read the
same as when the template wrote each cell itself. The reference below is that template."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.template import Context, Template
from django.template.loader import render_to_string
from django.utils import timezone

from bidlog.reports.tables import (
    CODE,
    COUNT,
    GRID,
    MONEY,
    RATE,
    STATE,
    TEXT,
    TIME,
    Column,
    ReportTable,
)

# templates/bidlog/_report_table.html before the cells were written in Python.
REFERENCE = Template(
    """<table{% if css %} class="{{ css }}"{% endif %}>
  <thead><tr>{% for column in table.columns %}<th>{{ column.title }}</th>{% endfor %}</tr></thead>
  <tbody>
    {% for row in rows %}
      {% spaceless %}<tr>{% for cell in row %}
        {% if cell.kind == "code" %}<td><a href="{% url 'troubleshooting' %}#code-{{ cell.value }}">{{ cell.value }}</a></td>
        {% elif cell.kind == "grid" %}<td><code>{{ cell.value }}</code></td>
        {% elif cell.kind == "rate" %}<td>{% if cell.value is not None %}{% widthratio cell.value 1 100 %}%{% endif %}</td>
        {% elif cell.kind == "money" %}<td>{% if cell.value is not None %}${{ cell.value }}{% endif %}</td>
        {% elif cell.kind == "time" %}<td>{{ cell.value|date:bucket_format }}</td>
        {% elif cell.kind == "state" %}<td>{{ cell.value|default:"(none)" }}</td>
        {% else %}<td>{{ cell.value|default_if_none:"" }}</td>{% endif %}
      {% endfor %}</tr>{% endspaceless %}
    {% empty %}
      {% if empty %}<tr><td colspan="{{ table.columns|length }}">{{ empty }}</td></tr>{% endif %}
    {% endfor %}
  </tbody>
</table>
"""  # noqa: E501
)

TABLE = ReportTable(
    "every_kind",
    (
        Column("code", "Code", CODE),
        Column("text", "Text", TEXT),
        Column("grid", "Grid", GRID),
        Column("count", "Count", COUNT),
        Column("rate", "Rate", RATE),
        Column("money", "Money", MONEY),
        Column("time", "From", TIME),
        Column("state", "State", STATE),
    ),
)
MOMENT = datetime(2026, 12, 4, 23, 30, tzinfo=UTC)
ROWS = [
    [1000, 'Acme <Auto> & "Sons"', "cm97s8", 1234567, 0.3333, Decimal("2628919.65"), MOMENT, "CO"],
    [4005, "", "", 0, 0.005, Decimal("0.00"), MOMENT.replace(hour=0, minute=0), ""],
    [None, None, None, None, None, None, None, None],
    [0, "x'y", "<script>", -3, 1.0, Decimal("-1.5"), "", "<b>"],
    [99999, "  ", " ", 10**12, 0.125, Decimal("1E+2"), MOMENT, "TX"],
    [5000, "é ü", "a&b", 7, "n/a", Decimal("12.345"), MOMENT, None],
]  # fmt: skip


def _reference(rows: list[list], time_format: str, empty: str) -> str:
    kinds = [column.kind for column in TABLE.columns]
    cells = [[{"kind": k, "value": v} for k, v in zip(kinds, row, strict=True)] for row in rows]
    context = {
        "table": TABLE,
        "rows": cells,
        "empty": empty,
        "css": "x",
        "bucket_format": time_format,
    }
    return REFERENCE.render(Context(context))


def _new(rows: list[list], time_format: str, empty: str) -> str:
    context = {
        "table": TABLE,
        "rows": TABLE.cells(rows, time_format=time_format),
        "empty": empty,
        "css": "x",
    }
    return render_to_string("bidlog/_report_table.html", context)


def _body(html: str) -> str:
    # The new template's comment line aside, both write the same table.
    return html[html.index("<table") :]


@pytest.mark.parametrize("time_format", ["Y-m-d", "Y-m-d H:i"])
@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_cells_read_as_the_template_wrote_them(settings, time_format, zone):
    settings.TIME_ZONE = zone
    with timezone.override(zone):
        assert _body(_new(ROWS, time_format, "")) == _body(_reference(ROWS, time_format, ""))


def test_an_empty_table_says_so_as_before():
    assert _body(_new([], "Y-m-d", "No bids.")) == _body(_reference([], "Y-m-d", "No bids."))
    assert "No bids." in _new([], "Y-m-d", "No bids.")


def test_cells_escape_what_a_buyer_or_an_import_wrote():
    html = _new(ROWS, "Y-m-d", "")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "Acme &lt;Auto&gt; &amp; &quot;Sons&quot;" in html
    assert '<a href="/troubleshooting/#code-1000">1000</a>' in html
    assert "<td>33%</td>" in html and "<td>$2628919.65</td>" in html
