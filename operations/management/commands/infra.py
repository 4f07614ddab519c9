"""`manage.py infra deploy|status|teardown`: the CloudFormation stack, through the infra package."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from infra import cfn_template, deploy, errors, stacks, teardown


def parse_params(values: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CommandError(f"--param expects KEY=VALUE, got {item!r}")
        params[key.strip()] = value
    return params


def settings_defaults() -> dict[str, str]:
    """Parameters for a new stack: the names this service is configured with."""
    defaults = {
        "CropsBucketName": settings.CROPS_BUCKET,
        "ArtifactsBucketName": settings.ARTIFACTS_BUCKET,
        "ObservationsTableName": settings.OBSERVATIONS_TABLE,
        "AnalysisQueueName": settings.ANALYSIS_QUEUE_NAME,
        "MetricsNamespace": settings.CLOUDWATCH_NAMESPACE,
        "EnvironmentName": settings.STAGEPULSE_ENV,
    }
    if settings.AWS_ENDPOINT_URL:  # a moto server: leave out what moto cannot run
        defaults["Embedded"] = "true"
    return defaults


class Command(BaseCommand):
    help = "Deploy, inspect or delete the StagePulse CloudFormation stack (see docs/infra.md)."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["deploy", "status", "teardown"])
        parser.add_argument("--stack-name", default=stacks.DEFAULT_STACK_NAME)
        parser.add_argument(
            "--param",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="template parameter (repeatable); others keep their previous value on update",
        )
        parser.add_argument("--template", type=Path, default=cfn_template.TEMPLATE_PATH)
        parser.add_argument(
            "--no-vendor",
            action="store_true",
            help="lambda mode: bundle without numpy/Pillow (give AnalyzerLayerArns instead)",
        )
        parser.add_argument(
            "--purge-artifacts",
            action="store_true",
            help="teardown: also empty and delete the retained artifacts bucket",
        )

    def handle(self, *args, action: str, stack_name: str, **options):
        try:
            if action == "deploy":
                self.deploy(stack_name, options)
            elif action == "status":
                self.status(stack_name)
            else:
                teardown.teardown(
                    stack_name, purge_artifacts=options["purge_artifacts"], emit=self.stdout.write
                )
        except errors.DeployError as exc:
            raise CommandError(str(exc)) from None

    def deploy(self, stack_name: str, options: dict) -> None:
        if not Path(options["template"]).is_file():
            raise CommandError(f"no template at {options['template']}")
        result = deploy.deploy(
            stack_name,
            parse_params(options["param"]),
            template_path=options["template"],
            create_defaults=settings_defaults(),
            vendor_dependencies=not options["no_vendor"],
            emit=self.stdout.write,
        )
        self.stdout.write(self.style.SUCCESS(f"{stack_name}: {result.action} ({result.status})"))
        self.write_outputs(result.outputs)

    def status(self, stack_name: str) -> None:
        state = stacks.status(stack_name)
        if state is None:
            raise CommandError(f"stack {stack_name} does not exist")
        style = self.style.ERROR if state.failures else self.style.SUCCESS
        self.stdout.write(style(f"{state.stack_name}: {state.status}") + f"  {state.reason}")
        if state.updated:
            self.stdout.write(f"last change {state.updated:%Y-%m-%d %H:%M:%S %Z}")
        self.stdout.write("parameters:")
        for key, value in sorted(state.parameters.items()):
            self.stdout.write(f"  {key} = {value}")
        self.stdout.write("resources:")
        for logical_id, kind, status in state.resources:
            self.stdout.write(f"  {logical_id:<28} {kind:<32} {status}")
        for line in state.failures:
            self.stdout.write(self.style.ERROR(f"  {line}"))
        self.write_outputs(state.outputs)

    def write_outputs(self, outputs: dict[str, str]) -> None:
        self.stdout.write("outputs:")
        for key, value in sorted(outputs.items()):
            self.stdout.write(f"  {key} = {value}")
        self.stdout.write("service environment:")
        for key, value in cfn_template.service_env(outputs).items():
            self.stdout.write(f"  {key}={value}")
