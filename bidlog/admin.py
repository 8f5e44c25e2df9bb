"""Admin for the bid log: a read-only window onto attempts and routing decisions.

Rows are evidence of what was sent and answered, so nobody edits or deletes them here;
retention removes old rows. The changelists avoid the unfiltered ``COUNT(*)`` Django shows by
default (``show_full_result_count``), which on millions of rows costs seconds per page.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from bidlog.models import BidLog, Call


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewing only: no add, change or delete, for anyone."""

    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(BidLog)
class BidLogAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "buyer",
        "source",
        "outcome",
        "code",
        "bid_amount",
        "duration_ms",
    )
    list_filter = ("source", "outcome", "code", "buyer")
    search_fields = ("caller_id", "buyer__grid_id")
    date_hierarchy = "created_at"
    list_select_related = ("buyer",)
    raw_id_fields = ("buyer", "call")
    ordering = ("-created_at", "-id")


@admin.register(Call)
class CallAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "caller_id",
        "state_code",
        "strategy",
        "winner",
        "routed",
        "bid_amount",
        "duration_ms",
        "source",
    )
    list_filter = ("routed", "strategy", "source", "winner")
    search_fields = ("caller_id",)
    date_hierarchy = "created_at"
    list_select_related = ("winner",)
    raw_id_fields = ("winner",)
    ordering = ("-created_at", "-id")
