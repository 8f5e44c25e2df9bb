"""Django admin for buyers, with the change history of every buyer."""

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from simple_history.admin import SimpleHistoryAdmin

from buyers import services
from buyers.choices import BuyerStatus
from buyers.forms import BuyerForm
from buyers.models import Buyer


@admin.register(Buyer)
class BuyerAdmin(SimpleHistoryAdmin):
    """Buyers grouped by what an ops person changes together; history shows who changed what."""

    form = BuyerForm
    list_display = (
        "name",
        "grid_id",
        "status",
        "priority",
        "min_bid",
        "vertical",
        "health_check_minutes",
    )
    list_filter = ("status", "vertical", "caller_id_format")
    search_fields = ("name", "grid_id", "notes")
    ordering = ("priority", "name")
    readonly_fields = ("created_at", "updated_at", "next_health_check_at")
    history_list_display = ("status", "min_bid", "priority")

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict | None = None
    ) -> HttpResponse:
        # simple-history looks the id up as it is given: "x" raised ValueError (a 500) where
        # every other admin page of a buyer answers 404.
        try:
            Buyer._meta.pk.to_python(unquote(object_id))
        except ValidationError:
            raise Http404(f"No buyer with id {object_id!r}.") from None
        return super().history_view(request, object_id, extra_context)

    actions: tuple[str, ...] = ("activate", "pause", "disable")
    # The buyer pages' sections, then the bookkeeping only the admin shows.
    fieldsets = (
        *((title, {"fields": fields}) for title, fields in BuyerForm.SECTIONS),
        (
            "Record",
            {
                "classes": ("collapse",),
                "fields": ("next_health_check_at", "created_at", "updated_at"),
            },
        ),
    )

    def save_model(self, request: HttpRequest, obj: Buyer, form: BuyerForm, change: bool) -> None:
        # The form has run full_clean already; the service saves it with its author.
        services.buyer_save(buyer=obj, actor=request.user)

    def _set_status(self, request: HttpRequest, queryset: QuerySet[Buyer], status: str) -> None:
        changed = 0
        for buyer in queryset:
            try:
                services.buyer_set_status(buyer=buyer, status=status, actor=request.user)
            except ValidationError as exc:
                # A buyer saved before a rule existed can fail validation; say which one.
                self.message_user(request, f"{buyer}: {'; '.join(exc.messages)}", messages.ERROR)
            else:
                changed += 1
        label = BuyerStatus(status).label.lower()
        self.message_user(request, f"{changed} buyer(s) set to {label}.", messages.SUCCESS)

    @admin.action(description="Activate selected buyers", permissions=["change"])
    def activate(self, request: HttpRequest, queryset: QuerySet[Buyer]) -> None:
        self._set_status(request, queryset, BuyerStatus.ACTIVE)

    @admin.action(description="Pause selected buyers", permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Buyer]) -> None:
        self._set_status(request, queryset, BuyerStatus.PAUSED)

    @admin.action(description="Disable selected buyers (stops all bids)", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[Buyer]) -> None:
        self._set_status(request, queryset, BuyerStatus.DISABLED)
