"""Slack notifier (slack_sdk Web API). The token never appears in errors or logs."""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from tools.errors import PermanentError, TemporaryError


class SlackNotifier:
    def __init__(self, *, token: str, timeout_s: float = 10, base_url: str | None = None) -> None:
        kw = {"base_url": base_url} if base_url else {}
        self._client = WebClient(token=token, timeout=int(timeout_s), **kw)

    def notify(self, *, channel: str, text: str, blocks: list[dict[str, object]] | None = None) -> str | None:
        try:
            resp = self._client.chat_postMessage(channel=channel, text=text, blocks=blocks)
        except SlackApiError as e:
            code = e.response.get("error", "unknown_error") if e.response is not None else "unknown_error"
            if code in ("ratelimited",) or (e.response is not None and e.response.status_code >= 500):
                raise TemporaryError(f"Slack chat.postMessage to {channel} failed: {code}", source="slack", delay=5) from None
            raise PermanentError(f"Slack chat.postMessage to {channel} failed: {code}", source="slack") from None
        except OSError as e:
            raise TemporaryError(f"cannot reach Slack: {e}", source="slack") from None
        ts = resp.get("ts")
        return str(ts) if ts else None
