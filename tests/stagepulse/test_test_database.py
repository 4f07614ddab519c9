"""The test database a worker gets from the migrated template (tests/db_template.py) is the one
`migrate` makes: every migration on disk applied, nothing left to plan."""

from pathlib import Path

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tests.db_template import _template_key

pytestmark = pytest.mark.django_db


def test_every_migration_on_disk_is_applied():
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()
    assert executor.migration_plan(leaves) == []
    applied = executor.loader.applied_migrations
    assert set(executor.loader.disk_migrations) <= set(applied)


def test_a_changed_migration_makes_a_new_template(tmp_path, monkeypatch):
    """A stale template is never reused: its name follows every migration's source."""
    from django.apps import apps

    before = _template_key()
    config = apps.get_app_config("stages")
    copy = tmp_path / "stages"
    (copy / "migrations").mkdir(parents=True)
    for path in (Path(config.path) / "migrations").glob("*.py"):
        (copy / "migrations" / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(config, "path", str(copy))
    assert _template_key() == before
    (copy / "migrations" / "9999_new.py").write_text("# a new migration\n")
    assert _template_key() != before
