"""Organizer API for stages and sets (thin: overlap rules live in stages.services)."""

from __future__ import annotations

import django_filters
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from festival.models import Festival
from festival.tenancy import TenantScopedRelatedField, TenantViewSet
from festival.tenant_filters import TenantFilterSet
from stages import services
from stages.models import Set, Stage
from stages.selectors import set_playing


class StageSerializer(serializers.ModelSerializer):
    festival = TenantScopedRelatedField(queryset=Festival.objects.all())
    now_playing = serializers.SerializerMethodField()

    class Meta:
        model = Stage
        fields = [
            "id",
            "festival",
            "name",
            "slug",
            "position",
            "description",
            "typical_crowd",
            "now_playing",
        ]
        validators = []  # uniqueness per festival is checked in validate() with a clear message

    def get_now_playing(self, stage) -> str | None:
        from django.utils import timezone

        playing = set_playing(stage.pk, timezone.now())
        return playing.artist if playing else None

    def validate(self, attrs):
        festival = attrs.get("festival", getattr(self.instance, "festival", None))
        if self.instance is not None and festival.pk != self.instance.festival_id:
            raise ValidationError({"festival": "A stage cannot move to another festival."})
        for field in ("slug", "name"):
            value = attrs.get(field)
            if value is None:
                continue
            clash = Stage.objects.filter(festival=festival, **{f"{field}__iexact": value})
            if self.instance is not None:
                clash = clash.exclude(pk=self.instance.pk)
            if clash.exists():
                raise ValidationError({field: f"This festival already has a stage {value!r}."})
        return attrs


class StageViewSet(TenantViewSet):
    queryset = Stage.objects.select_related("festival")
    serializer_class = StageSerializer
    filterset_fields = ["festival"]
    search_fields = ["name", "slug"]

    def organization_for_create(self, serializer):
        return serializer.validated_data["festival"].organization


class SetSerializer(serializers.ModelSerializer):
    stage = TenantScopedRelatedField(queryset=Stage.objects.select_related("festival"))
    festival = serializers.IntegerField(source="stage.festival_id", read_only=True)
    stage_name = serializers.CharField(source="stage.name", read_only=True)

    class Meta:
        model = Set
        fields = [
            "id",
            "festival",
            "stage",
            "stage_name",
            "artist",
            "starts_at",
            "ends_at",
            "notes",
        ]

    def validate(self, attrs):
        stage = attrs.get("stage", getattr(self.instance, "stage", None))
        if self.instance is not None and stage.festival_id != self.instance.stage.festival_id:
            raise ValidationError({"stage": "A set cannot move to another festival's stage."})
        starts = attrs.get("starts_at", getattr(self.instance, "starts_at", None))
        ends = attrs.get("ends_at", getattr(self.instance, "ends_at", None))
        services.validate_set_slot(
            stage, starts, ends, exclude_id=getattr(self.instance, "pk", None)
        )
        return attrs

    def save(self, **kwargs):
        instance = self.instance or Set()
        for key, value in {**self.validated_data, **kwargs}.items():
            setattr(instance, key, value)
        try:
            self.instance = services.save_set(instance)
        except DjangoValidationError as error:
            raise ValidationError(error.message_dict) from error
        return self.instance


class SetFilter(TenantFilterSet):
    """`?festival=` is what the README documents and what a set's JSON calls the field; a set has
    no festival column of its own, so the filter is declared (a plain `filterset_fields` entry
    silently ignored it). `stage__festival` stays for clients that already use it."""

    festival = django_filters.ModelChoiceFilter(
        field_name="stage__festival", queryset=Festival.objects.all()
    )  # choices scoped to the user by TenantFilterSet, like every foreign-key filter

    class Meta:
        model = Set
        fields = {
            "stage": ["exact"],
            "stage__festival": ["exact"],
            "starts_at": ["gte", "lte"],
            "ends_at": ["gte", "lte"],
        }


class SetViewSet(TenantViewSet):
    queryset = Set.objects.select_related("stage", "stage__festival")
    serializer_class = SetSerializer
    filterset_class = SetFilter
    search_fields = ["artist"]
    ordering_fields = ["starts_at", "artist"]

    def organization_for_create(self, serializer):
        return serializer.validated_data["stage"].organization
