"""Django's SQLite backend, creating the database file's folder on the first connection, so that
importing the settings creates nothing (the embedded default lives under VAR_DIR)."""
