"""Request parsers of the API (``REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"]``).

Kept apart from :mod:`callgrid_portal.api`: DRF imports these while it is still loading its
own views, so this module imports nothing of DRF but its parsers.
"""

from __future__ import annotations

from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from callgrid_portal.jsondepth import TOO_DEEP_MESSAGE, too_deep


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing JSON nested too deeply with a 400 instead of crashing."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON parse error - {TOO_DEEP_MESSAGE}") from None
        if too_deep(data):
            raise ParseError(f"JSON parse error - {TOO_DEEP_MESSAGE}")
        return data
