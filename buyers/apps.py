from django.apps import AppConfig


class BuyersConfig(AppConfig):
    """Buyers and how to reach them."""

    name = "buyers"
