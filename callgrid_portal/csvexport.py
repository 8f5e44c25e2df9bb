"""CSV downloads that a spreadsheet opens safely, and that viewers may read.

Buyer names, messages and extra parameters come from outside. A cell starting with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return would be run as a formula by Excel, LibreOffice
or Google Sheets (CSV injection), so :func:`csv_cell` prefixes it with ``'``, which makes the
spreadsheet show the text as it is. A plain number (``-12.50``) is left alone. Every CSV the
portal writes goes through :func:`csv_write`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from callgrid_portal.privacy import mask_phones_in

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


class _Writable(Protocol):
    def write(self, text: str, /) -> Any: ...


def csv_cell(value: Any, *, masked: bool = False) -> Any:
    """One cell as written: times in ISO 8601, phone-like values masked when ``masked``,
    and text a spreadsheet would run as a formula prefixed with ``'``."""
    if isinstance(value, datetime):
        return value.isoformat()
    if not isinstance(value, str):
        return value
    if masked:
        value = mask_phones_in(value)
    if value.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


# Rows are written to ``out`` this many at a time: an HTTP response encodes every write.
_ROWS_PER_WRITE = 500


def csv_write(out: _Writable, rows: Iterable[Iterable[Any]], *, masked: bool = False) -> None:
    """Write ``rows`` to ``out`` as CSV, each cell through :func:`csv_cell`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for number, row in enumerate(rows, start=1):
        writer.writerow([csv_cell(value, masked=masked) for value in row])
        if number % _ROWS_PER_WRITE == 0:
            out.write(buffer.getvalue())
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():
        out.write(buffer.getvalue())
