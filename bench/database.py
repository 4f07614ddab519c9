"""Benchmarks that need PostgreSQL get a database of their own, dropped and created each run."""

from __future__ import annotations

import os
import sys


def fresh_postgres_database(url: str) -> None:
    """Drop (if present) and create the database named at the end of `url`."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def start_django_on(url: str) -> None:
    """A fresh database at `url`, Django set up on it, migrated."""
    fresh_postgres_database(url)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stagepulse.settings")
    sys.path.insert(0, os.getcwd())
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
