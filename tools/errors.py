"""Errors that tell the caller what to do: retry a TemporaryError, record and skip a PermanentError."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

_SECRET_PATTERNS = [
    re.compile(r"(?i)(authorization:\s*)(bearer|token|basic)\s+\S+"),
    re.compile(r"(?i)((?:token|password|secret|api[_-]?key)=)[^&\s]+"),
    re.compile(r"((?:https?://)?)[^/@\s:]+:[^/@\s]+@"),   # user:password@host, with or without a scheme
    re.compile(r"\b(xox[abprs]-[A-Za-z0-9-]+|gh[pousr]_[A-Za-z0-9]{20,}|glpat-[A-Za-z0-9_-]{20,}|sk-[A-Za-z0-9_-]{20,})\b"),
]


def without_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """``(url without user:password@, user, password)`` for an http(s) URL (decoded); other URLs
    come back unchanged with no credentials."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return url, None, None
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=host)), unquote(user), unquote(password)


def printable(text: str) -> str:
    """``text`` with control characters (newlines included) shown as escapes, so untrusted text
    cannot forge log lines or drive a terminal."""
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)


def scrub(text: str) -> str:
    """Remove credentials (tokens, passwords in URLs, auth headers) from a message."""
    text = _SECRET_PATTERNS[0].sub(r"\1\2 ***", text)
    text = _SECRET_PATTERNS[1].sub(r"\1***", text)
    text = _SECRET_PATTERNS[2].sub(r"\1***@", text)
    text = _SECRET_PATTERNS[3].sub("***", text)
    return text


class ToolError(Exception):
    """Base of adapter errors. ``source`` names the system (a URL, a path), never a secret."""

    def __init__(self, message: str, *, source: str = "") -> None:
        super().__init__(scrub(message))
        self.source = scrub(source)


class TemporaryError(ToolError):
    """Worth retrying after ``delay`` seconds (network blip, 5xx, lock held)."""

    def __init__(self, message: str, *, source: str = "", delay: float = 1.0) -> None:
        super().__init__(message, source=source)
        self.delay = delay


class PermanentError(ToolError):
    """Retrying will not help (bad query, rejected push, malformed file): record it and move on."""


class CycleAborted(Exception):
    """The cycle cannot run (Prometheus or the Git remote unreachable after retries): exit 1. Kept
    here, not in agents/, so the CLI can catch it without importing the whole cycle (torch,
    scipy) for ``--help`` or a config error."""


class CycleFailed(CycleAborted):
    """A stage of the cycle raised: the cycle ended there, the failure is recorded, and the next
    run starts a fresh cycle (only a cycle whose process died is resumed): exit 1."""

    def __init__(self, message: str, *, stage: str = "cycle") -> None:
        super().__init__(message)
        self.stage = stage   # the stage that raised (the daemon counts errors by stage)
