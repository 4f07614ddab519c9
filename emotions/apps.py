from django.apps import AppConfig


class EmotionsConfig(AppConfig):
    name = "emotions"
    verbose_name = "Crowd expressions"

    def ready(self) -> None:
        from emotions.cloudwatch_dashboards import connect_signals

        connect_signals()
