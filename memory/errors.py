"""Errors of the memory layer that callers catch without importing the store (and SQLAlchemy)."""

from __future__ import annotations


class StoreMissing(LookupError):
    """``Store.open_existing`` found no store at the URL (no file, or a database without our tables)."""
