"""`manage.py infra`: the thin command over infra.deploy, against moto."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command


def run(*args) -> str:
    out = StringIO()
    call_command("infra", *args, stdout=out)
    return out.getvalue()


def test_deploy_status_teardown(moto_aws, settings):
    settings.CROPS_BUCKET = "cmd-crops"  # a new stack takes the names the service is set up with
    deployed = run("deploy", "--stack-name", "cmd", "--param", "Embedded=true")
    assert "cmd: created (CREATE_COMPLETE)" in deployed
    assert "CROPS_BUCKET=cmd-crops" in deployed

    status = run("status", "--stack-name", "cmd")
    assert "cmd: CREATE_COMPLETE" in status
    assert "CropsBucket" in status and "AWS::S3::Bucket" in status
    assert "STAGEPULSE_ANALYZER_QUEUE_URL=" in status

    assert "no changes" in run("deploy", "--stack-name", "cmd")

    torn = run("teardown", "--stack-name", "cmd", "--purge-artifacts")
    assert "cmd: deleted" in torn
    with pytest.raises(CommandError, match="cmd does not exist"):
        run("status", "--stack-name", "cmd")


def test_bad_param_and_deploy_errors_become_command_errors(moto_aws):
    with pytest.raises(CommandError, match="KEY=VALUE"):
        run("deploy", "--param", "Embedded")
    with pytest.raises(CommandError, match="AnalyzerMode='x': must be one of"):
        run("deploy", "--param", "AnalyzerMode=x")
