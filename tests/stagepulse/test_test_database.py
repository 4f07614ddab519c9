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


@pytest.mark.django_db(transaction=True)
def test_a_transactional_tests_flush_empties_the_tables_and_keeps_content_types_and_permissions():
    """The flush after a transactional test (without post_migrate, tests/db_template.py) leaves
    the next test what post_migrate would have: every content type and permission, same ids."""
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType
    from django.test import testcases

    from festival.models import Organization

    types = set(ContentType.objects.values_list("id", "app_label", "model"))
    permissions = set(Permission.objects.values_list("id", "codename", "content_type_id"))
    assert ("festival", "organization") in {(app, model) for _, app, model in types}
    assert len(permissions) >= 4 * len(types) - 8  # add, change, delete, view (a few have none)
    Organization.objects.create(name="Flushed", slug="flushed")
    testcases.call_command(
        "flush", verbosity=0, interactive=False, database="default", reset_sequences=False,
        allow_cascade=False, inhibit_post_migrate=False,
    )  # fmt: skip
    assert not Organization.objects.exists()
    assert set(ContentType.objects.values_list("id", "app_label", "model")) == types
    assert set(Permission.objects.values_list("id", "codename", "content_type_id")) == permissions
    assert ContentType.objects.get_for_model(Organization).model == "organization"
