"""Organizer API for devices (cameras)."""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from devices.models import Device
from edge_package.contracts import validate_edge_config
from festival.models import Festival
from festival.tenancy import TenantScopedRelatedField, TenantViewSet
from stages.models import Stage


class DeviceSerializer(serializers.ModelSerializer):
    festival = TenantScopedRelatedField(queryset=Festival.objects.all())
    stage = TenantScopedRelatedField(queryset=Stage.objects.all(), allow_null=True, required=False)
    effective_config = serializers.JSONField(read_only=True)

    class Meta:
        model = Device
        fields = [
            "id",
            "festival",
            "stage",
            "name",
            "thing_name",
            "platform",
            "status",
            "last_seen_at",
            "software_version",
            "config",
            "effective_config",
            "created_at",
        ]
        read_only_fields = ["status", "last_seen_at", "software_version", "created_at"]

    def validate_config(self, value):
        problems = validate_edge_config(value)
        if problems:
            raise ValidationError(problems)
        return value

    def validate(self, attrs):
        festival = attrs.get("festival", getattr(self.instance, "festival", None))
        stage = attrs.get("stage", getattr(self.instance, "stage", None))
        if self.instance is not None and festival.pk != self.instance.festival_id:
            raise ValidationError(
                {"festival": "A device cannot move to another festival; register it again there."}
            )
        if stage is not None and stage.festival_id != festival.pk:
            raise ValidationError({"stage": "This stage belongs to another festival."})
        return attrs


class DeviceViewSet(TenantViewSet):
    queryset = Device.objects.select_related("festival", "stage")
    serializer_class = DeviceSerializer
    filterset_fields = ["festival", "stage", "platform", "status"]
    search_fields = ["name", "thing_name"]

    def organization_for_create(self, serializer):
        return serializer.validated_data["festival"].organization
