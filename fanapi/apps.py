from django.apps import AppConfig


class FanApiConfig(AppConfig):
    """The public, anonymous, throttled fan API (read-only; public festivals only)."""

    name = "fanapi"
    verbose_name = "Fan API"
