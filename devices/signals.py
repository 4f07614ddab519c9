"""Festival changes that cameras must hear about: the analysis mode is part of every camera's
effective config (Device.effective_config), so switching a festival to edge mode re-pushes the
desired settings of its registered cameras (standalone cameras also get it from their next
telemetry answer). A push that fails is recorded on the device and retried by the health sweep
(devices.services.health.repush_failed_shadows)."""

from __future__ import annotations

from django.db import transaction


def remember_analysis_mode(sender, instance, raw=False, update_fields=None, **kwargs) -> None:
    if raw or (update_fields is not None and "analysis_mode" not in update_fields):
        return  # fixtures being loaded, or a save that cannot change the mode
    if instance.pk:
        old = sender.objects.filter(pk=instance.pk).values_list("analysis_mode", flat=True)
        instance._analysis_mode_before = old.first()


def push_mode_change(sender, instance, created, **kwargs) -> None:
    before = getattr(instance, "_analysis_mode_before", None)
    if created or before is None or before == instance.analysis_mode:
        return
    festival_id = instance.pk
    transaction.on_commit(lambda: push_festival_cameras(festival_id))


def push_festival_cameras(festival_id: int) -> int:
    """Push each registered camera's config to its shadow; returns how many were pushed."""
    from devices.models import Device
    from devices.services.health import push_config_to_shadow

    cameras = Device.objects.filter(festival_id=festival_id, registered_at__isnull=False)
    return sum(push_config_to_shadow(device) for device in cameras.select_related("festival"))


def connect() -> None:
    from django.db.models.signals import post_save, pre_save

    from festival.models import Festival

    pre_save.connect(remember_analysis_mode, sender=Festival, dispatch_uid="devices-mode-before")
    post_save.connect(push_mode_change, sender=Festival, dispatch_uid="devices-mode-push")
