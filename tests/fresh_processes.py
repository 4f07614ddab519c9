"""Fresh starts of the project (manage.py or `python -c`), each in its own process with its own
environment, forked from one interpreter that imported Django and the third-party packages once.

A fresh interpreter costs ~1-1.4 s of CPU to import them; a fork of one that already did costs a
tenth of that. The settings, the app registry and the checks are still each run's own: the parent
refuses to fork if its imports configured the settings (or imported the project's). Each run's
exit status and output come back as a subprocess.CompletedProcess, as subprocess.run gives them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The parent: reads [{name, env, out, err, and args (manage.py's) or code}] on stdin, prints
# {name: exit status}. Each fork runs `python manage.py ARGS` or `python -c CODE` as the command
# line would, its output in the run's two files.
_FORKING_PARENT = r"""
import json, os, runpy, sys, traceback
import django, django.core.management, django.db.models, django.urls, django.test  # noqa
import rest_framework, celery, boto3, botocore.session, dj_database_url, yaml  # noqa
import celery.app, rest_framework.fields, drf_spectacular.utils  # noqa
import django.contrib.postgres.fields  # noqa
import cv2, numpy, requests, psycopg, jsonschema  # noqa
from django.conf import settings
if settings.configured or "stagepulse.settings" in sys.modules:
    sys.exit("the pre-imports configured the settings: a run would not start fresh")
statuses = {}
for run in json.load(sys.stdin):
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.environ.clear()
            os.environ.update(run["env"])
            for fd, path in ((1, run["out"]), (2, run["err"])):
                target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(target, fd)
                os.close(target)
            try:
                if "code" in run:
                    sys.argv = ["-c"]
                    exec(compile(run["code"], "<string>", "exec"), {"__name__": "__main__"})
                else:
                    sys.argv = ["manage.py", *run["args"]]
                    runpy.run_path("manage.py", run_name="__main__")
                code = 0
            except SystemExit as stop:
                if stop.code is None or isinstance(stop.code, int):
                    code = stop.code or 0
                else:
                    print(stop.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    statuses[run["name"]] = os.waitstatus_to_exitcode(status)
print(json.dumps(statuses))
"""


def run_fresh(runs: dict[str, dict], folder: Path) -> dict[str, subprocess.CompletedProcess]:
    """`runs`: name -> {"env": the whole environment, and "args" (manage.py's) or "code"};
    their output goes to files in `folder`. Returns name -> the run's CompletedProcess."""
    plan = [
        {
            "name": name,
            **run,
            "out": str(folder / f"{name}.out"),
            "err": str(folder / f"{name}.err"),
        }
        for name, run in runs.items()
    ]
    parent = subprocess.run(
        [sys.executable, "-c", _FORKING_PARENT],
        cwd=ROOT,
        input=json.dumps(plan),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert parent.returncode == 0, parent.stdout + parent.stderr
    statuses = json.loads(parent.stdout.strip().splitlines()[-1])
    return {
        run["name"]: subprocess.CompletedProcess(
            run.get("args") or [sys.executable, "-c", run["code"]],
            statuses[run["name"]],
            Path(run["out"]).read_text(),
            Path(run["err"]).read_text(),
        )
        for run in plan
    }
