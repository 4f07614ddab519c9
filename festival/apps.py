from django.apps import AppConfig


class FestivalConfig(AppConfig):
    name = "festival"
    verbose_name = "Tenancy and festivals"

    def ready(self) -> None:
        # Importing the Celery app here (not in festival/__init__) keeps festival.aws importable
        # by the Django-free analyzer without pulling in Celery.
        from festival import authentication, celery  # noqa: F401  (signal receivers)
