"""ENGINE "festival.sqlite3": Django's SQLite backend; the file's folder is made lazily."""

from __future__ import annotations

from pathlib import Path

from django.db.backends.sqlite3 import base


def database_folder(name) -> Path | None:
    """The folder a file database lives in; None for in-memory and URI names."""
    name = str(name)
    if not name or name == ":memory:" or name.startswith("file:") or "mode=memory" in name:
        return None
    return Path(name).parent


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        folder = database_folder(conn_params.get("database", ""))
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        return super().get_new_connection(conn_params)
