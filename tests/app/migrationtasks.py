"""The migration tests' task, loaded into the app's real workers with `-I migrationtasks` (tests/app on
PYTHONPATH): an idempotent effect per tag, and a count of every run, in one SQLite file ($MIGRATION_DB)."""

from __future__ import annotations

import os
import sqlite3
import time

from celery import shared_task

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS effects (tag TEXT PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS runs (tag TEXT, at REAL)",
)


def connect(path: str, attempts: int = 600) -> sqlite3.Connection:
    """The file, made WAL with the schema on first use. Workers in several containers may do that at the same
    moment, and SQLite refuses a journal-mode change it cannot make at once ("database is locked") without
    waiting for its busy timeout: tried again every 0.1 s, for up to a minute."""
    connection = sqlite3.connect(path, timeout=60, isolation_level=None)
    for attempt in range(1, attempts + 1):
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            for statement in SCHEMA:
                connection.execute(statement)
            return connection
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts:
                connection.close()
                raise
            time.sleep(0.1)
    raise ValueError(f"attempts must be at least 1, not {attempts}")


@shared_task(name="migration.record")
def record(tag: str, seconds: float = 0.0) -> str:
    """The effect (a row per tag, written once however often the task runs) and the run (a row per run)."""
    time.sleep(seconds)
    connection = connect(os.environ["MIGRATION_DB"])
    try:
        connection.execute("INSERT OR IGNORE INTO effects (tag) VALUES (?)", (tag,))
        connection.execute("INSERT INTO runs (tag, at) VALUES (?, ?)", (tag, time.time()))
    finally:
        connection.close()
    return tag
