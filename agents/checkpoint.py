"""LangGraph checkpoints in a SQLite file of the state folder."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite import SqliteSaver

from agents.config import Settings


@contextmanager
def sqlite_checkpointer(path: Path) -> Iterator[SqliteSaver]:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False)
    try:
        yield SqliteSaver(conn)
    finally:
        conn.close()


@contextmanager
def open_checkpointer(settings: Settings) -> Iterator[Any]:
    """LangGraph checkpoints beside the rest of the state: PostgreSQL when ``memory.url`` is
    PostgreSQL (several replicas share them), else a SQLite file in the state folder."""
    url = settings.memory.url
    if url.startswith(("postgresql", "postgres:")):
        from langgraph.checkpoint.postgres import PostgresSaver

        conn = "postgresql://" + url.split("://", 1)[1]
        with PostgresSaver.from_conn_string(conn) as saver:
            saver.setup()
            yield saver
    else:
        with sqlite_checkpointer(settings.checkpoint_path) as saver:
            yield saver
