"""Report API: ``/reports/summary/``, ``/reports/timeseries/``, ``/reports/states/`` and
``/reports/campaigns/`` (JSON, or CSV with ``?format=csv``).

Views only parse input, call :mod:`bidlog.reports.services` and shape the answer. Reports need
the viewer role.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.http import Http404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.renderers import BaseRenderer, BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bidlog.choices import Source
from bidlog.filters import parse_iso_datetime
from bidlog.reports.campaigns import GROUPS, report_by_tag
from bidlog.reports.services import report_summary, report_timeseries
from bidlog.reports.states import report_states
from bidlog.reports.tables import (
    BUYERS,
    STATES,
    TIMESERIES,
    ReportTable,
    plain,
    summary_records,
    tag_table,
)
from bidlog.tags import TAG_MAX_LENGTH, TAG_RULE, tag_problem
from buyers.models import Buyer
from callgrid_portal.allowed import drf_invalid_choice, not_one_of
from callgrid_portal.csvexport import csv_write
from callgrid_portal.privacy import can_see_caller_ids
from callgrid_portal.roles import VIEWER

MAX_RANGE = timedelta(days=400)
MAX_BUCKETS = {"hour": 24 * 93, "day": 400}


class CSVRenderer(BaseRenderer):
    """Passes through the CSV text a report view prepared; errors become one ``detail`` line."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context=None):
        if isinstance(data, str):
            return data
        detail = data.get("detail", "") if isinstance(data, dict) else data
        return _csv([["detail"], [detail]])


def _csv(rows: list[list[Any]], *, masked: bool = False) -> str:
    out = io.StringIO()
    csv_write(out, rows, masked=masked)
    return out.getvalue()


@extend_schema_field(OpenApiTypes.DATETIME)
class IsoDateTime(serializers.Field):
    """ISO 8601 date or date-time from 1970 to 2999; naive means UTC (as the bids list reads it)."""

    def to_internal_value(self, data: Any) -> datetime:
        try:
            return parse_iso_datetime(str(data))
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def to_representation(self, value: datetime) -> str:
        return value.isoformat()


class TagQueryField(serializers.CharField):
    """A campaign or publisher tag to filter by, checked by the rule of ``bidlog.tags``."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("max_length", TAG_MAX_LENGTH)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        text = super().to_internal_value(data)
        problem = tag_problem(self.field_name or "tag", text)
        if problem is not None:
            raise serializers.ValidationError(problem)
        return text


class ReportQuerySerializer(serializers.Serializer):
    """``since`` (default: 24 h before ``until``), ``until`` (default: now), buyer, source,
    campaign and publisher."""

    since = IsoDateTime(required=False)
    until = IsoDateTime(required=False)
    buyer = serializers.IntegerField(required=False, min_value=1)
    # DRF's serializer metaclass moves declared fields off the class, so this never replaces
    # Field.source; the stubs see a class attribute of another type.
    source = serializers.ChoiceField(  # type: ignore[assignment]
        choices=Source.choices,
        required=False,
        error_messages={"invalid_choice": drf_invalid_choice(Source.choices)},
    )
    campaign = TagQueryField(help_text=f"Only calls with this campaign tag ({TAG_RULE}).")
    publisher = TagQueryField(help_text=f"Only calls with this publisher tag ({TAG_RULE}).")

    def validate_buyer(self, value: int) -> int:
        if not Buyer.objects.filter(pk=value).exists():
            raise serializers.ValidationError("No such buyer.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        until = attrs.get("until") or timezone.now()
        since = attrs.get("since") or until - timedelta(hours=24)
        if since >= until:
            raise serializers.ValidationError({"since": "Must be before until."})
        if until - since > MAX_RANGE:
            raise serializers.ValidationError({"since": "A report covers at most 400 days."})
        return {**attrs, "since": since, "until": until}


class TimeseriesQuerySerializer(ReportQuerySerializer):
    """Adds ``bucket`` (``hour`` or ``day``) and ``tz`` (IANA zone, default ``TIME_ZONE``)."""

    bucket = serializers.ChoiceField(
        choices=["hour", "day"],
        default="hour",
        error_messages={"invalid_choice": drf_invalid_choice(["hour", "day"])},
    )
    tz = serializers.CharField(required=False, max_length=64)

    def validate_tz(self, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise serializers.ValidationError(
                "Not an IANA time zone, e.g. America/New_York."
            ) from None
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        bucket = attrs.get("bucket", "hour")
        length = timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
        if (attrs["until"] - attrs["since"]) / length > MAX_BUCKETS[bucket]:
            # Named on the bucket when one was asked for, else on the range's start.
            field = "bucket" if "bucket" in self.initial_data else "since"
            raise serializers.ValidationError(
                {field: f"At most {MAX_BUCKETS[bucket]} {bucket} buckets; narrow the range."}
            )
        attrs.setdefault("tz", settings.TIME_ZONE)
        return attrs


def _query(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    data = dict(serializer.validated_data)
    data["buyer_id"] = data.pop("buyer", None)
    return data


def _csv_response(
    table: ReportTable, records: list[dict[str, Any]], request: Request, *, name: str = ""
) -> Response:
    """The report table as a CSV download; text escaped against formulas and, for viewers,
    phone-masked."""
    text = table.csv(table.rows(records), masked=not can_see_caller_ids(request.user))
    return Response(
        text, headers={"Content-Disposition": f'attachment; filename="{name or table.name}.csv"'}
    )


class _ReportView(APIView):
    read_role = VIEWER
    renderer_classes = [JSONRenderer, BrowsableAPIRenderer, CSVRenderer]

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # DRF answers an unknown ?format= with a 404, as if the report did not exist.
        try:
            return super().perform_content_negotiation(request, force)
        except Http404:
            wanted = request.query_params.get("format", "")
            formats = [renderer.format for renderer in self.get_renderers()]
            raise serializers.ValidationError({"format": [not_one_of(wanted, formats)]}) from None

    def wants_csv(self, request: Request) -> bool:
        return getattr(request.accepted_renderer, "format", None) == "csv"


class ReportSummaryView(_ReportView):
    """Totals, breakdowns by outcome, class and code, latency, revenue and per-buyer rows."""

    @extend_schema(
        parameters=[ReportQuerySerializer],
        responses=OpenApiResponse(OpenApiTypes.OBJECT, "The summary; README 'Reports' defines it."),
    )
    def get(self, request: Request) -> Response:
        summary = report_summary(**_query(ReportQuerySerializer, request))
        if not self.wants_csv(request):
            return Response(plain(summary))
        return _csv_response(BUYERS, summary_records(summary), request, name="summary")


class ReportTimeseriesView(_ReportView):
    """One row per hour or day bucket in the asked time zone."""

    @extend_schema(
        parameters=[TimeseriesQuerySerializer],
        responses=OpenApiResponse(OpenApiTypes.OBJECT, "{bucket, tz, results: [rows]}"),
    )
    def get(self, request: Request) -> Response:
        query = _query(TimeseriesQuerySerializer, request)
        rows = report_timeseries(**query)
        if not self.wants_csv(request):
            return Response({"bucket": query["bucket"], "tz": query["tz"], "results": plain(rows)})
        return _csv_response(TIMESERIES, rows, request)


class ReportStatesView(_ReportView):
    """Attempts, bids and acceptance per inbound state."""

    @extend_schema(
        parameters=[ReportQuerySerializer],
        responses=OpenApiResponse(OpenApiTypes.OBJECT, "{results: [rows per state]}"),
    )
    def get(self, request: Request) -> Response:
        rows = report_states(**_query(ReportQuerySerializer, request))
        if not self.wants_csv(request):
            return Response({"results": rows})
        return _csv_response(STATES, rows, request)


class TagReportQuerySerializer(ReportQuerySerializer):
    """Adds ``group``: ``campaign`` (default) or ``publisher``."""

    group = serializers.ChoiceField(
        choices=list(GROUPS),
        default="campaign",
        error_messages={"invalid_choice": drf_invalid_choice(list(GROUPS))},
    )


class ReportByTagView(_ReportView):
    """Calls, acceptance (calls sold) and revenue per campaign or per publisher."""

    @extend_schema(
        parameters=[TagReportQuerySerializer],
        responses=OpenApiResponse(
            OpenApiTypes.OBJECT,
            "{group, results: [{<group>, calls, routed_calls, unsold_calls, acceptance_rate, "
            "revenue, revenue_per_call}]}; the README's 'Reports' defines each figure.",
        ),
    )
    def get(self, request: Request) -> Response:
        query = _query(TagReportQuerySerializer, request)
        rows = report_by_tag(**query)
        group = query["group"]
        if not self.wants_csv(request):
            return Response({"group": group, "results": plain(rows)})
        return _csv_response(tag_table(group), rows, request, name=f"by-{group}")
