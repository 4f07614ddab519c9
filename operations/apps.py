from django.apps import AppConfig


class OperationsConfig(AppConfig):
    """The orchestration on top of every app: festival editing (API and admin, lineup CSV), the
    demo, closeout, the organizer dashboard, the DJ booth screen and their commands."""

    name = "operations"
    verbose_name = "Festival operations"
