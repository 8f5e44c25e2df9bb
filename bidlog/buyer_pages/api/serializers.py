"""Serializers of the buyers API."""

from typing import Any, cast

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from rest_framework import serializers
from rest_framework.settings import api_settings

from bidlog.monitoring.health import (
    answer_outcomes_recent,
    buyer_health,
    open_alert_priorities,
)
from buyers import services
from buyers.models import Buyer
from callgrid_portal.privacy import shown_to

# Field kwargs DRF derives from the model's validators. The model checks these itself in
# full_clean; leaving them here would run every rule twice, with two wordings.
_MODEL_RULE_KWARGS = ("validators", "min_value", "max_value", "max_length", "min_length")


def to_drf_error(exc: DjangoValidationError) -> serializers.ValidationError:
    """Turn a model ``ValidationError`` into DRF's, keeping the field names.

    Django's ``__all__`` key becomes DRF's ``non_field_errors``.
    """
    if hasattr(exc, "error_dict"):
        detail = {
            (api_settings.NON_FIELD_ERRORS_KEY if field == NON_FIELD_ERRORS else field): messages
            for field, messages in exc.message_dict.items()
        }
        return serializers.ValidationError(detail)
    return serializers.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: exc.messages})


# Fields of a buyer that may hold phone numbers.
_PHONE_BEARING_FIELDS = ("health_check_caller_id", "extra_params", "notes")


class BuyerListSerializer(serializers.ListSerializer):
    """A list of buyers whose health badges read alerts and answers once for the whole list."""

    def to_representation(self, data: Any) -> list[dict[str, Any]]:
        buyers = list(data.all() if isinstance(data, models.manager.BaseManager) else data)
        # The root serializer's context is the dict it was given (or its own {}), shared with
        # every child; the stubs type it as a read-only Mapping.
        context = cast(dict[str, Any], self.context)
        context["open_alerts"] = open_alert_priorities()
        context["recent_outcomes"] = answer_outcomes_recent(buyer_ids=[b.pk for b in buyers])
        return super().to_representation(buyers)


class BuyerSerializer(serializers.ModelSerializer):
    """A buyer with every field of SPEC §3, its health badge and timestamps.

    DRF only parses types here (numbers, choices, JSON); every business rule runs once, in
    ``Buyer.full_clean()`` called from :meth:`validate` through ``buyers.services``, and its
    errors come back keyed by field. ``duplicate_window_days`` may be null (or left out on
    create) to take the vertical's default.
    """

    health = serializers.SerializerMethodField(
        help_text="Health badge from the scheduled health checks; unknown until they run."
    )

    # URLField would add DRF's own URL validator on top of the model's.
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.URLField: serializers.CharField,
    }

    class Meta:
        model = Buyer
        list_serializer_class = BuyerListSerializer
        fields = [
            "id",
            "name",
            "grid_id",
            "endpoint_url",
            "status",
            "min_bid",
            "vertical",
            "duplicate_window_days",
            "timeout_seconds",
            "max_concurrency",
            "rate_limit_per_minute",
            "priority",
            "accepted_states",
            "caller_id_format",
            "extra_params",
            "health_check_minutes",
            "health_check_caller_id",
            "capacity_cooldown_seconds",
            "timezone",
            "operating_hours",
            "daily_cap",
            "monthly_cap",
            "auto_pause",
            "notes",
            "health",
            "next_health_check_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["next_health_check_at", "created_at", "updated_at"]
        extra_kwargs = {"duplicate_window_days": {"allow_null": True}}

    def build_standard_field(
        self, field_name: str, model_field: models.Field
    ) -> tuple[type[serializers.Field], dict[str, Any]]:
        field_class, field_kwargs = super().build_standard_field(field_name, model_field)
        for name in _MODEL_RULE_KWARGS:
            field_kwargs.pop(name, None)
        return field_class, field_kwargs

    def to_representation(self, instance: Buyer) -> dict[str, Any]:
        data = super().to_representation(instance)
        # Viewers read the buyer's settings with every phone-like value masked: its test
        # caller, its extra parameters (ANI and the like) and its notes.
        user = getattr(self.context.get("request"), "user", None)
        for field in _PHONE_BEARING_FIELDS:
            data[field] = shown_to(user, data[field])
        return data

    def get_health(self, buyer: Buyer) -> str:
        # In a list, BuyerListSerializer has read alerts and answers for every buyer at once;
        # one buyer alone reads its own.
        return buyer_health(
            buyer,
            open_alerts=self.context.get("open_alerts"),
            outcomes=self.context.get("recent_outcomes", {}).get(buyer.pk),
        )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Validate the buyer as the model does, once, and keep it ready to save."""
        try:
            self._prepared = services.buyer_prepare(buyer=self.instance, **attrs)
        except DjangoValidationError as exc:
            raise to_drf_error(exc) from None
        return attrs

    def _actor(self) -> Any:
        request = self.context.get("request")
        return getattr(request, "user", None)

    def create(self, validated_data: dict[str, Any]) -> Buyer:
        return self._save_prepared()

    def update(self, instance: Buyer, validated_data: dict[str, Any]) -> Buyer:
        return self._save_prepared()

    def _save_prepared(self) -> Buyer:
        try:
            return services.buyer_save(buyer=self._prepared, actor=self._actor())
        except DjangoValidationError as exc:
            raise to_drf_error(exc) from None
