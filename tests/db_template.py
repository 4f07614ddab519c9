"""The SQLite test database, migrated once and copied: each pytest-xdist worker (and each local
run) used to apply every migration to its own in-memory database, ~2 s of CPU a worker spent
rendering the same model states again. The first worker to get here migrates and saves the result
in the system's temporary folder under a name made from every migration's source and Django's
version; the others wait for it (a file lock) and copy it in with SQLite's backup API, so their
databases are what `migrate` made, byte for byte. PostgreSQL runs migrate as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import sqlite3
import tempfile
from pathlib import Path

import django
from django.apps import apps
from django.core import management


def _template_key() -> str:
    """Changes whenever any app's migrations, or Django's own, change."""
    digest = hashlib.sha256(django.get_version().encode())
    for config in sorted(apps.get_app_configs(), key=lambda c: c.label):
        folder = Path(config.path) / "migrations"
        for path in sorted(folder.glob("*.py")):
            digest.update(f"{config.label}/{path.name}".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def arm_migrations_from_template():
    """Until the returned function is called (pytest-django's django_db_setup is done): an
    in-memory SQLite database's `migrate` is the saved template, copied in, or migrate itself,
    saved as the template for the workers that come after."""
    real_call_command = management.call_command
    template = Path(tempfile.gettempdir()) / f"stagepulse-test-db-{_template_key()}.sqlite3"

    def call_command(name, *args, **options):
        from django.db import connections

        connection = connections[options.get("database", "default")]
        if name != "migrate" or connection.vendor != "sqlite" or not connection.is_in_memory_db():
            return real_call_command(name, *args, **options)
        with open(template.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            connection.ensure_connection()
            if template.exists():
                with contextlib.closing(sqlite3.connect(template)) as saved:
                    saved.backup(connection.connection)
                return None
            result = real_call_command(name, *args, **options)
            partial = template.with_suffix(".partial")
            with contextlib.closing(sqlite3.connect(partial)) as saved:
                connection.connection.backup(saved)
            partial.replace(template)  # whole or not at all, for a run that is stopped midway
            return result

    def disarm() -> None:
        management.call_command = real_call_command

    management.call_command = call_command
    return disarm


# What post_migrate writes (contenttypes and auth): TransactionTestCase's flush after each
# transactional test emptied these tables and emitted post_migrate to write them again, ~28 ms of
# the flush's ~30 (measured with 50 flushes). Parents first, for the foreign keys.
POST_MIGRATE_TABLES = ("django_content_type", "auth_permission")


def flushes_keep_post_migrate_rows() -> None:
    """From now on, a flush of a test database (TransactionTestCase's, after each transactional
    test) runs without post_migrate and puts back the rows post_migrate had made, as they are
    now: the same content types and permissions, under the same ids (below every sequence's
    next value on PostgreSQL, which a flush without reset_sequences leaves as it was)."""
    from django.db import connections
    from django.test import testcases

    saved: dict[str, list[tuple[str, list[tuple]]]] = {}  # alias -> [(INSERT statement, rows)]
    for connection in connections.all():
        tables = []
        with connection.cursor() as cursor:
            if not set(connection.introspection.table_names(cursor)) >= set(POST_MIGRATE_TABLES):
                continue  # no test database was set up (a run of tests that need none)
            for table in POST_MIGRATE_TABLES:
                cursor.execute(f'SELECT * FROM "{table}"')
                columns = [column[0] for column in cursor.description]
                insert = 'INSERT INTO "{}" ({}) VALUES ({})'.format(
                    table, ", ".join(f'"{c}"' for c in columns), ", ".join(["%s"] * len(columns))
                )
                tables.append((insert, cursor.fetchall()))
        saved[connection.alias] = tables
    real_call_command = testcases.call_command

    def call_command(name, *args, **options):
        alias = options.get("database", "default")
        if name != "flush" or options.get("inhibit_post_migrate") or alias not in saved:
            return real_call_command(name, *args, **options)
        result = real_call_command(name, *args, **{**options, "inhibit_post_migrate": True})
        with connections[alias].cursor() as cursor:
            for insert, rows in saved[alias]:
                cursor.executemany(insert, rows)
        return result

    testcases.call_command = call_command
