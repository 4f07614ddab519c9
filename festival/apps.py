from django.apps import AppConfig


class FestivalConfig(AppConfig):
    name = "festival"
    verbose_name = "Tenancy and festivals"

    def ready(self) -> None:
        # The Celery app is loaded by the project package (stagepulse/__init__.py).
        from festival import authentication  # noqa: F401  (signal receivers)
