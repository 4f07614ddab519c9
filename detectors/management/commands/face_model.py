"""manage.py face_model: the face model registry from the shell (and the demo).

face_model list --organization ORG
face_model upload --organization ORG --name NAME FILE [--sha256 HEX]
face_model bundled --organization ORG [--which short_range|full_range]
face_model promote ID [--clip frames=8,width=1280,height=720]
face_model rollout ID (--device THING ... | --stage ID)
face_model rollback THING
face_model camera THING [--frames N]   a simulated camera on the device's edge configuration
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from detectors import selectors
from detectors.evaluation import Clip, CountingSink
from detectors.models import FaceModel
from detectors.services import gate, registry, rollouts
from devices.models import Device
from devices.services.registration import device_config
from festival.models import Organization
from stages.models import Stage


class Command(BaseCommand):
    help = "Face model registry: list, upload, bundled, promote (gate), rollout, rollback, camera."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list").add_argument("--organization", required=True)
        upload = sub.add_parser("upload")
        upload.add_argument("--organization", required=True)
        upload.add_argument("--name", required=True)
        upload.add_argument("--sha256", default="")
        upload.add_argument("file")
        bundled = sub.add_parser("bundled")
        bundled.add_argument("--organization", required=True)
        bundled.add_argument("--which", choices=sorted(registry.BUNDLED), default="full_range")
        promote = sub.add_parser("promote")
        promote.add_argument("id", type=int)
        promote.add_argument("--clip", default="", help="default: FACE_MODEL_GATE_CLIP")
        rollout = sub.add_parser("rollout")
        rollout.add_argument("id", type=int)
        rollout.add_argument("--device", action="append", default=[], help="thing name")
        rollout.add_argument("--stage", type=int)
        sub.add_parser("rollback").add_argument("thing")
        camera = sub.add_parser("camera")
        camera.add_argument("thing")
        camera.add_argument("--frames", type=int, default=3)

    def handle(self, *args, **options):
        try:
            getattr(self, f"do_{options['action']}")(options)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc

    def _org(self, slug):
        try:
            return Organization.objects.get(slug=slug)
        except Organization.DoesNotExist as exc:
            raise CommandError(f"no organization {slug!r}") from exc

    def _model(self, pk):
        try:
            return FaceModel.objects.get(pk=pk)
        except FaceModel.DoesNotExist as exc:
            raise CommandError(f"no face model {pk}") from exc

    def _device(self, thing):
        try:
            return Device.objects.get(thing_name=thing)
        except Device.DoesNotExist as exc:
            raise CommandError(f"no device {thing!r}") from exc

    def do_list(self, options):
        organization = self._org(options["organization"])
        for model in FaceModel.objects.filter(organization=organization):
            latest = selectors.latest_gate(model)
            figures = (
                f"recall {latest.recall:.3f} precision {latest.precision:.3f} fps {latest.fps:.1f}"
                if latest
                else "not gated"
            )
            self.stdout.write(
                f"{model.id:>4} {model} {model.source} {model.layout} {model.status}: {figures}"
            )

    def do_upload(self, options):
        with open(options["file"], "rb") as handle:
            data = handle.read()
        model = registry.register_model(
            self._org(options["organization"]),
            name=options["name"],
            data=data,
            expected_sha256=options["sha256"],
        )
        self.stdout.write(f"registered {model.id}: {model} ({model.layout}) at {model.uri}")

    def do_bundled(self, options):
        model = registry.register_bundled(self._org(options["organization"]), options["which"])
        self.stdout.write(f"registered {model.id}: {model} ({model.layout}) at {model.uri}")

    def do_promote(self, options):
        model = self._model(options["id"])
        clip = Clip.parse(options["clip"]) if options["clip"] else None
        try:
            evaluation = gate.promote_model(model, clip)
        except gate.PromotionRefused as exc:
            self._comparison(exc.evaluation)
            raise CommandError(exc.messages[0]) from exc
        self._comparison(evaluation)
        self.stdout.write(self.style.SUCCESS(f"{model} is now the current model"))

    def _comparison(self, evaluation):
        comparison = evaluation.comparison
        sections = [(f"clip {evaluation.clip}", comparison)] + [
            (f"labelled clip '{c['name']}'", c) for c in comparison.get("labelled_clips", [])
        ]
        for title, section in sections:
            self.stdout.write(f"gate on {title}")
            self.stdout.write(f"  {'metric':<10}{'candidate':>12}{'current':>12}{'delta':>10}")
            for row in section["rows"]:
                self.stdout.write(
                    f"  {row['metric']:<10}{row['candidate']:>12.3f}{row['current']:>12.3f}"
                    f"{row['delta']:>+10.3f}"
                )

    def do_rollout(self, options):
        model = self._model(options["id"])
        devices = [self._device(thing) for thing in options["device"]]
        stage = Stage.objects.get(pk=options["stage"]) if options["stage"] else None
        for rollout in rollouts.roll_out(model, devices=devices, stage=stage):
            pushed = "shadow updated" if rollout.shadow_pushed else "config saved (not registered)"
            self.stdout.write(f"{rollout.device.thing_name}: {model} ({pushed})")

    def do_rollback(self, options):
        device = self._device(options["thing"])
        rollout = rollouts.roll_back(device)
        back_to = rollout.previous_model or "the bundled model"
        self.stdout.write(f"{device.thing_name}: back to {back_to}")

    def do_camera(self, options):
        """Run the real edge loop on the configuration this device receives, on synthetic frames
        (nothing is uploaded), and say which face model it loaded."""
        from edge_package.config import parse_config
        from edge_package.pipeline import EdgeRunner
        from edge_package.synthetic import SyntheticCrowdSource

        device = self._device(options["thing"])
        config = parse_config(device_config(device), f"device {device.thing_name}")
        runner = EdgeRunner(config, sink=CountingSink())
        choice = runner.model_choice
        self.stdout.write(
            f"{device.thing_name} runs the {choice.source} model {choice.sha256[:12]} "
            f"({runner.detector.layout}, {runner.detector.input_size} px)"
        )
        if choice.problem:
            self.stdout.write(self.style.WARNING(choice.problem))
        source = SyntheticCrowdSource(width=1280, height=720, faces=12, min_face=32, seed=1)
        for index in range(options["frames"]):
            runner.process_frame(source.render(index), index / 15)
        self.stdout.write(f"{runner.frames} frames, {runner.faces_detected} faces detected")
