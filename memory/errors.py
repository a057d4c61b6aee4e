"""Errors of the memory layer that callers catch without importing the store (and SQLAlchemy)."""

from __future__ import annotations


class StoreMissing(LookupError):
    """``Store.open_existing`` found no store at the URL (no file, or a database without our tables)."""


class StoreBusy(RuntimeError):
    """Another process holds the store's cycle lock (one cycle at a time per store)."""

    def __init__(self, holder: str) -> None:
        super().__init__(f"another cycle is running on this store ({holder}); wait for it to finish, or pass --wait")
        self.holder = holder
