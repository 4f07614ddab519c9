"""Admin for face detectors: upload a model or a labelled gate clip, start a SageMaker training
job, run the promotion gate (the comparison is shown on the model page), roll a camera back.
Scoped per organization."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils.html import format_html, format_html_join

from detectors import selectors
from detectors.models import (
    Evaluation,
    FaceModel,
    LabelledClip,
    ModelFormat,
    ModelRollout,
    RolloutState,
    TrainingJob,
)
from detectors.services import gate, labelled_clips, registry, rollouts, training
from festival.tenancy import TenantAdminMixin, has_role


def _copy_into(obj, created) -> None:
    """The admin saved nothing itself: show the row the service created."""
    obj.__dict__.update({k: v for k, v in created.__dict__.items() if not k.startswith("_")})
    obj._state.adding = False
    obj._state.db = created._state.db


class FaceModelUploadForm(forms.ModelForm):
    file = forms.FileField(help_text="A BlazeFace .tflite model (full- or short-range layout).")
    expected_sha256 = forms.CharField(
        required=False, max_length=64, help_text="Optional: refused when the file hashes otherwise."
    )
    model_format = forms.ChoiceField(choices=ModelFormat.choices, initial=ModelFormat.TFLITE)

    class Meta:
        model = FaceModel
        fields = ["organization", "name", "notes"]

    def clean(self):
        cleaned = super().clean()
        upload = cleaned.get("file")
        if upload is not None:
            cleaned["data"] = upload.read()
            try:
                registry.inspect_model(
                    cleaned["data"],
                    fmt=cleaned.get("model_format", ModelFormat.TFLITE),
                    expected_sha256=cleaned.get("expected_sha256", ""),
                )
            except ValidationError as exc:
                raise forms.ValidationError({"file": exc.messages}) from exc
        return cleaned


class EvaluationInline(admin.TabularInline):
    model = Evaluation
    fk_name = "face_model"
    extra = 0
    can_delete = False
    fields = ["created_at", "recall", "precision", "fps", "passed", "baseline", "clip"]
    readonly_fields = fields
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(FaceModel)
class FaceModelAdmin(TenantAdminMixin, admin.ModelAdmin):
    list_display = ["__str__", "organization", "source", "layout", "status", "latest_figures"]
    list_filter = ["organization", "status", "source"]
    search_fields = ["name", "sha256"]
    inlines = [EvaluationInline]
    actions = ["promote_through_gate"]
    readonly_fields = [
        "version",
        "source",
        "format",
        "layout",
        "input_size",
        "sha256",
        "size_bytes",
        "bucket",
        "key",
        "status",
        "training_job",
        "promoted_at",
        "created_by",
        "gate_comparison",
    ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = FaceModelUploadForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["organization", "name", "file", "expected_sha256", "model_format", "notes"]
        return ["organization", "name", "notes", *self.readonly_fields]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["organization", "name", *self.readonly_fields]

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        data = form.cleaned_data
        created = registry.register_model(
            data["organization"],
            name=data["name"],
            data=data["data"],
            fmt=data.get("model_format", ModelFormat.TFLITE),
            expected_sha256=data.get("expected_sha256", ""),
            notes=data.get("notes", ""),
            user=request.user,
        )
        _copy_into(obj, created)

    @admin.display(description="last gate (recall / precision / fps)")
    def latest_figures(self, obj):
        latest = selectors.latest_gate(obj)
        if latest is None:
            return "-"
        verdict = "passed" if latest.passed else "refused"
        return f"{latest.recall:.3f} / {latest.precision:.3f} / {latest.fps:.1f} ({verdict})"

    @admin.display(description="gate: candidate beside the current model")
    def gate_comparison(self, obj):
        latest = selectors.latest_gate(obj)
        if latest is None:
            return "Not gated yet: use the action 'Promote through the evaluation gate'."
        sections = [("synthetic crowd clip", latest.comparison)] + [
            (f"labelled clip '{c['name']}'", c) for c in latest.comparison.get("labelled_clips", [])
        ]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    clip,
                    r["metric"],
                    f"{r['candidate']:.3f}",
                    f"{r['current']:.3f}",
                    f"{r['delta']:+.3f}",
                )
                for clip, section in sections
                for r in section.get("rows", [])
            ),
        )
        reasons = "; ".join(latest.comparison.get("reasons", [])) or "within the margin"
        return format_html(
            "<table><tr><th>clip</th><th>metric</th><th>this model</th><th>current ({})</th>"
            "<th>delta</th></tr>{}</table><p>{}: {}</p>",
            latest.comparison.get("current_model", {}).get("label", ""),
            rows,
            "Passed" if latest.passed else "Refused",
            reasons,
        )

    @admin.action(description="Promote through the evaluation gate")
    def promote_through_gate(self, request, queryset):
        for model in queryset:
            if not has_role(request.user, model.organization_id, self.write_role):
                self.message_user(request, f"{model}: your role cannot promote.", messages.ERROR)
                continue
            try:
                evaluation = gate.promote_model(model, user=request.user)
            except gate.PromotionRefused as exc:
                self.message_user(request, f"{model}: {exc.messages[0]}", messages.ERROR)
            except ValidationError as exc:
                self.message_user(request, f"{model}: {' '.join(exc.messages)}", messages.ERROR)
            else:
                self.message_user(
                    request,
                    f"{model} promoted (recall {evaluation.recall:.3f}, "
                    f"precision {evaluation.precision:.3f}). "
                    "Roll it out to cameras: POST /api/v1/face-models/{id}/rollout/.",
                    messages.SUCCESS,
                )


class LabelledClipUploadForm(forms.ModelForm):
    video = forms.FileField(help_text="AVI, MP4/MOV or Matroska/WebM that OpenCV can decode.")
    # Not "annotations": that is the model's JSON field, which the form must not validate.
    annotations_file = forms.FileField(
        label="Annotations",
        help_text='JSON: {"fps": 15, "frames": {"0": [[x, y, w, h], ...]}} (docs/detectors.md).',
    )

    class Meta:
        model = LabelledClip
        fields = ["organization", "name"]

    def clean(self):
        """The service's checks as form errors, before anything is stored."""
        cleaned = super().clean()
        if cleaned.get("organization") and cleaned.get("name"):
            try:
                labelled_clips.check_clip_name(cleaned["organization"], cleaned["name"])
            except ValidationError as exc:
                self.add_error("name", exc.message_dict["name"])
        video, annotations = cleaned.get("video"), cleaned.get("annotations_file")
        # The API's limits, checked on the upload's size before anything is read into memory.
        if video is not None and video.size > settings.LABELLED_CLIP_MAX_BYTES:
            self.add_error(
                "video", f"The video is larger than {settings.LABELLED_CLIP_MAX_BYTES} bytes."
            )
            video = None
        cap = labelled_clips.ANNOTATIONS_MAX_BYTES
        if annotations is not None and annotations.size > cap:
            self.add_error("annotations_file", f"The annotations file is larger than {cap} bytes.")
            annotations = None
        if video is not None and annotations is not None:
            cleaned["video_data"], cleaned["annotations_data"] = video.read(), annotations.read()
            try:
                labelled_clips.inspect_labelled_clip(
                    cleaned["video_data"], cleaned["annotations_data"]
                )
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    field = {"annotations": "annotations_file"}.get(field, field)
                    self.add_error(field if field in self.fields else None, errors)
        return cleaned


@admin.register(LabelledClip)
class LabelledClipAdmin(TenantAdminMixin, admin.ModelAdmin):
    list_display = ["name", "organization", "frame_count", "labelled_frames", "faces", "active"]
    list_filter = ["organization", "active"]
    search_fields = ["name", "sha256"]
    actions = ["take_out_of_gate", "put_into_gate"]
    readonly_fields = [
        "uri",
        *LabelledClip.MEASURED_FIELDS,
        "annotations",
        "created_by",
        "created_at",
    ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = LabelledClipUploadForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["organization", "name", "video", "annotations_file"]
        return ["organization", "name", "active", *self.readonly_fields]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["organization", "name", *self.readonly_fields]

    def save_model(self, request, obj, form, change):
        if change:
            labelled_clips.set_labelled_clip_active(obj, obj.active)
            return
        data = form.cleaned_data
        created = labelled_clips.add_labelled_clip(
            data["organization"],
            name=data["name"],
            video=data["video_data"],
            annotations=data["annotations_data"],
            user=request.user,
        )
        _copy_into(obj, created)

    def delete_model(self, request, obj):
        labelled_clips.delete_labelled_clip(obj)

    def delete_queryset(self, request, queryset):
        for clip in queryset:
            labelled_clips.delete_labelled_clip(clip)

    @admin.action(description="Take out of the gate (keep the video)")
    def take_out_of_gate(self, request, queryset):
        for clip in queryset:
            if has_role(request.user, clip.organization_id, self.write_role):
                labelled_clips.set_labelled_clip_active(clip, False)

    @admin.action(description="Put into the gate")
    def put_into_gate(self, request, queryset):
        for clip in queryset:
            if has_role(request.user, clip.organization_id, self.write_role):
                labelled_clips.set_labelled_clip_active(clip, True)


class TrainingJobForm(forms.ModelForm):
    class Meta:
        model = TrainingJob
        fields = [
            "organization",
            "model_name",
            "training_data_uri",
            "output_uri",
            "role_arn",
            "image_uri",
            "instance_type",
            "instance_count",
            "max_runtime_s",
            "hyperparameters",
        ]

    def clean(self):
        """The checks start_training_job makes (its own prefixes, allowed role and image), as
        form errors before any AWS call."""
        cleaned = super().clean()
        organization = cleaned.get("organization")
        if organization is None or not cleaned.get("training_data_uri"):
            return cleaned
        _, problems = training.training_job_problems(
            organization,
            training_data_uri=cleaned["training_data_uri"],
            output_uri=cleaned.get("output_uri") or "",
            role_arn=cleaned.get("role_arn") or "",
            image_uri=cleaned.get("image_uri") or "",
        )
        for name, errors in problems.items():
            self.add_error(name, errors)
        return cleaned

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("output_uri", "role_arn", "image_uri"):
            if name in self.fields:
                self.fields[name].required = False
                self.fields[name].help_text = "Empty: the server's default (README)."


@admin.register(TrainingJob)
class TrainingJobAdmin(TenantAdminMixin, admin.ModelAdmin):
    form = TrainingJobForm
    list_display = ["job_name", "organization", "status", "secondary_status", "created_at"]
    list_filter = ["organization", "status"]
    actions = ["refresh_from_sagemaker"]
    readonly_fields = [
        "job_name",
        "job_arn",
        "status",
        "secondary_status",
        "failure_reason",
        "metrics",
        "model_artifact_uri",
        "logs_link",
        "polls",
        "finished_at",
    ]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return [*TrainingJobForm.Meta.fields, *self.readonly_fields]

    def get_fields(self, request, obj=None):
        return list(TrainingJobForm.Meta.fields) + ([] if obj is None else self.readonly_fields)

    def save_model(self, request, obj, form, change):
        if change:
            return
        data = dict(form.cleaned_data)
        organization = data.pop("organization")
        created = training.start_training_job(organization, user=request.user, **data)
        _copy_into(obj, created)
        if created.failure_reason:
            self.message_user(request, f"SageMaker refused: {created.failure_reason}", "ERROR")

    @admin.display(description="logs")
    def logs_link(self, obj):
        return format_html('<a href="{}">CloudWatch Logs</a>', obj.logs_url)

    @admin.action(description="Refresh from SageMaker")
    def refresh_from_sagemaker(self, request, queryset):
        for job in queryset:
            training.follow_training_job(job.id)
        self.message_user(request, "Refreshed.")


@admin.register(ModelRollout)
class ModelRolloutAdmin(TenantAdminMixin, admin.ModelAdmin):
    list_display = ["device", "face_model", "previous_model", "state", "shadow_pushed"]
    list_filter = ["organization", "state"]
    actions = ["roll_back"]
    readonly_fields = [
        "face_model",
        "device",
        "previous_model",
        "state",
        "shadow_pushed",
        "created_by",
        "ended_at",
    ]

    def has_add_permission(self, request, *args):
        return False

    @admin.action(description="Roll the camera back to its previous model")
    def roll_back(self, request, queryset):
        for rollout in queryset.filter(state=RolloutState.ACTIVE).select_related("device"):
            if not has_role(request.user, rollout.organization_id, self.write_role):
                continue
            rollouts.roll_back(rollout.device, user=request.user)
            self.message_user(request, f"{rollout.device} rolled back.")
