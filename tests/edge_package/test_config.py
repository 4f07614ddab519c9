"""Device configuration: one flat schema; every problem is reported in words a crew can act on."""

import json

import pytest

from edge_package.config import ConfigError, config_from_env, load_config, parse_config

GOOD = {"device": "cam-1", "festival": "fest-2026", "stage": "main", "bucket": "crops"}


def test_a_minimal_cloud_config_gets_the_contract_defaults():
    cfg = parse_config(GOOD)
    assert cfg.mode == "cloud"
    assert cfg.fps_cap == 15.0 and cfg.masks == [] and cfg.paused is False
    assert cfg.telemetry_interval_s == 60.0


def test_every_problem_is_reported_at_once():
    raw = {
        "device": "cam/1",
        "stage": "main",
        "fps_cap": 0,
        "mode": "edge",
        "masks": [[[0, 0], [2, 0], [1, 1]]],
        "colour": "red",
        "telemetry_interval_s": "often",
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    text = str(caught.value)
    for expected in (
        "festival: missing (required)",
        "device: 'cam/1' must be",
        "fps_cap: must be between 0.1 and 60",
        "masks[0]: point [2, 0] is outside the frame",
        "colour: unknown setting",
        "telemetry_interval_s: must be a positive number",
        "observations_table: required in edge mode",
    ):
        assert expected in text
    assert len(caught.value.problems) == 7


def test_cloud_mode_needs_a_bucket():
    raw = {k: v for k, v in GOOD.items() if k != "bucket"}
    with pytest.raises(ConfigError, match="bucket: required in cloud mode"):
        parse_config(raw)


def test_config_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(str(tmp_path / "missing.json"))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="broken.json is invalid:\n  - not valid JSON"):
        load_config(str(broken))
    good = tmp_path / "good.json"
    good.write_text(json.dumps({**GOOD, "paused": True}))
    assert load_config(str(good)).paused is True


def test_config_from_the_lambda_environment_inline_or_path(tmp_path):
    assert config_from_env({"STAGEPULSE_CONFIG": json.dumps(GOOD)}).device == "cam-1"
    path = tmp_path / "c.json"
    path.write_text(json.dumps(GOOD))
    assert config_from_env({"STAGEPULSE_CONFIG": str(path)}).stage == "main"
    with pytest.raises(ConfigError, match="STAGEPULSE_CONFIG is not set"):
        config_from_env({})


def test_tunable_updates_are_validated_before_they_apply():
    cfg = parse_config(GOOD)
    paused = cfg.with_tunables(paused=True, jpeg_quality=70)
    assert paused.paused and paused.jpeg_quality == 70 and paused.bucket == "crops"
    with pytest.raises(ConfigError, match="jpeg_quality: must be between 30 and 100"):
        cfg.with_tunables(jpeg_quality=5)


@pytest.mark.parametrize(
    "device", ["cam:main-1", "_cam", "-cam", "cam.1", "x" * 129, "cam\n", "2026"]
)
def test_device_names_follow_the_shared_thing_name_rule(device):
    """The server validates Device.thing_name with the same contracts rule, so the admin can no
    longer create a camera whose config the camera then refuses."""
    from edge_package.contracts import THING_NAME_RULE

    with pytest.raises(ConfigError) as caught:
        parse_config({**GOOD, "device": device})
    assert f"device: {device!r} must be {THING_NAME_RULE}" in str(caught.value)


@pytest.mark.parametrize("device", ["cam-1", "Main_Left-2", "9a", "x" * 128])
def test_thing_names_aws_iot_and_the_camera_both_accept_parse(device):
    assert parse_config({**GOOD, "device": device}).device == device


def test_without_a_usable_home_the_spool_and_model_cache_stay_in_the_working_folder(
    tmp_path, monkeypatch
):
    """Greengrass's ggc_user has no home folder; the component runs in its work folder."""
    from edge_package.model_store import default_cache_dir
    from edge_package.pipeline import default_spool_dir

    not_a_home = tmp_path / "home"
    not_a_home.write_text("")  # not a folder: nobody, root included, can create one under it
    monkeypatch.setenv("HOME", str(not_a_home))
    monkeypatch.delenv("STAGEPULSE_SPOOL_DIR", raising=False)
    monkeypatch.delenv("STAGEPULSE_MODEL_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    config = parse_config({"device": "cam-1", "festival": "f", "stage": "s", "bucket": "b"})
    assert default_spool_dir(config) == str(tmp_path / ".stagepulse" / "spool" / "cam-1")
    assert default_cache_dir() == str(tmp_path / ".stagepulse" / "models")
    monkeypatch.setenv("HOME", str(tmp_path / "real-home"))
    (tmp_path / "real-home").mkdir()
    assert default_spool_dir(config).startswith(str(tmp_path / "real-home" / ".stagepulse"))
