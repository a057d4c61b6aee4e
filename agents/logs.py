"""Log records with the cycle and incident they belong to, as JSON lines or plain text.

A cycle sets its id for everything it logs (``cycle_scope``); the loops over incidents set the
incident id (``incident_scope``). Both are context variables, so they follow the cycle through
LangGraph's nodes and never leak into another thread's records. ``JsonFormatter`` writes one JSON
object per line (``ts``, ``level``, ``logger``, ``message``, ``cycle_id`` and ``incident_id`` when
known, ``exc`` with the traceback); the plain-text format adds ``[cycle=... incident=...]``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TypeVar

T = TypeVar("T")

CYCLE_ID: ContextVar[str | None] = ContextVar("remediator_cycle_id", default=None)
INCIDENT_ID: ContextVar[str | None] = ContextVar("remediator_incident_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(ids)s: %(message)s"


@contextmanager
def cycle_scope(cycle_id: str) -> Iterator[None]:
    token = CYCLE_ID.set(cycle_id)
    try:
        yield
    finally:
        CYCLE_ID.reset(token)


@contextmanager
def incident_scope(incident_id: str | None) -> Iterator[None]:
    token = INCIDENT_ID.set(incident_id)
    try:
        yield
    finally:
        INCIDENT_ID.reset(token)


def each_incident(items: Iterable[T], incident_of: Callable[[T], str | None]) -> Iterator[T]:
    """``items``, with the incident id of each set for what is logged while it is handled."""
    token = INCIDENT_ID.set(None)
    try:
        for item in items:
            INCIDENT_ID.set(incident_of(item))
            yield item
    finally:
        INCIDENT_ID.reset(token)


class ContextFilter(logging.Filter):
    """Puts ``cycle_id`` / ``incident_id`` on each record (an ``extra=`` given by the caller wins)
    and ``ids``, their plain-text rendering."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "cycle_id", None) is None:
            record.cycle_id = CYCLE_ID.get()
        if getattr(record, "incident_id", None) is None:
            record.incident_id = INCIDENT_ID.get()
        parts = [f"{k}={v}" for k, v in (("cycle", getattr(record, "cycle_id", None)),
                                          ("incident", getattr(record, "incident_id", None))) if v]
        record.ids = f" [{' '.join(parts)}]" if parts else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line. The message is formatted (and scrubbed by the filters) first."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("cycle_id", "incident_id"):
            value = getattr(record, key, None)
            if value:
                doc[key] = str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exc"] = record.exc_text
        return json.dumps(doc, ensure_ascii=False, default=str)


def formatter(fmt: str, *, tty: bool) -> logging.Formatter:
    """``json`` / ``text`` / ``auto`` (text on a terminal, JSON otherwise)."""
    if fmt == "json" or (fmt == "auto" and not tty):
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT)


__all__ = ["CYCLE_ID", "INCIDENT_ID", "ContextFilter", "JsonFormatter", "cycle_scope", "each_incident", "formatter", "incident_scope"]
