from django.apps import AppConfig


class BidlogConfig(AppConfig):
    """Routing, bid attempts, calls, alerts and reports."""

    name = "bidlog"
    verbose_name = "Bid log"
