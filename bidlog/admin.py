"""Admin for the bid log: a read-only window onto attempts and routing decisions.

Rows are evidence of what was sent and answered, so nobody edits or deletes them here;
retention removes old rows. On millions of rows a ``COUNT(*)`` costs seconds per page, so the
changelists skip the unfiltered count (``show_full_result_count``), count the filtered rows
only up to :data:`COUNT_CAP` and have no date hierarchy (it scans every row for its years).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, cast

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from bidlog.models import BidLog, Call
from bidlog.monitoring import testbids
from buyers.admin import BuyerAdmin
from buyers.models import Buyer

COUNT_CAP = 10_000


class BoundedCountPaginator(Paginator):
    """Count at most ``COUNT_CAP + 1`` rows: past that, "10,001 results" is as useful as exact.

    The count runs as ``COUNT(*)`` over a ``LIMIT`` subquery, so its cost is bounded whatever
    the size of the table.
    """

    @cached_property
    def count(self) -> int:
        # The admin's changelist always pages a QuerySet.
        object_list = cast("QuerySet[Any]", self.object_list)
        return object_list.order_by()[: COUNT_CAP + 1].count()


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewing only: no add, change or delete, for anyone."""

    show_full_result_count = False
    paginator = BoundedCountPaginator

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
    list_select_related = ("winner",)
    raw_id_fields = ("winner",)
    ordering = ("-created_at", "-id")


admin.site.unregister(Buyer)


@admin.register(Buyer)
class BuyerWithTestBidsAdmin(BuyerAdmin):
    """The buyer admin with the test-bid action, which needs the log, so it is added here."""

    actions = ("send_test_bid", *BuyerAdmin.actions)

    @admin.action(description="Send a test bid to selected buyers", permissions=["change"])
    def send_test_bid(self, request: HttpRequest, queryset: QuerySet[Buyer]) -> None:
        """Queue one test bid per buyer (its health-check caller ID, else a demo number).

        The worker fills each ``pending`` row in; the message links to the rows to watch.
        """
        queued = []
        for buyer in queryset:
            try:
                bid = testbids.test_bid_queue(
                    buyer=buyer,
                    caller_id=testbids.caller_id_for_test_bids(buyer),
                    actor=request.user,
                )
            except testbids.BrokerUnavailable as exc:
                self.message_user(request, str(exc), messages.ERROR)
                return
            queued.append(bid)
        links = format_html_join(
            ", ",
            '<a href="{}">#{}</a>',
            ((reverse("admin:bidlog_bidlog_change", args=[bid.pk]), bid.pk) for bid in queued),
        )
        self.message_user(
            request,
            format_html("{} test bid(s) queued: {}", len(queued), links),
            messages.SUCCESS,
        )
