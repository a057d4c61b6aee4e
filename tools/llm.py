"""LLM adapter: any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, llama.cpp server).

The only module that imports ``openai``. :class:`OpenAIChat` runs one tool-using chat and
returns a pydantic model the caller asked for, plus the tokens it used:

* read-only tools are described to the model as strict function tools (``ToolSpec``); their
  arguments are validated with a pydantic model before the handler runs, and a bad call is
  answered with an error message (the model may try again), never executed;
* the final answer is structured output: ``response_format`` = the JSON schema of the
  response model (``structured="json_schema"``, the default), or a ``submit_answer`` function
  call (``structured="tool"``, for servers that cannot combine JSON-schema decoding with tools);
* transport problems are retried here (the SDK's own retries are off): HTTP 429 honouring
  ``Retry-After`` up to a cap, 5xx, timeouts, connection resets and truncated bodies; then a
  :class:`LLMUnavailable` (a ``TemporaryError``) says what happened. Other 4xx are
  :class:`LLMRejected`; output that does not parse is :class:`LLMInvalidOutput`; a chat that
  would go over its token budget is :class:`LLMBudgetExceeded`. Every error carries the tokens
  spent so far (``.usage``) and a short reason (``.short``); the API key never appears in them.
"""

from __future__ import annotations

import email.utils
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from tools.errors import PermanentError, TemporaryError, scrub

log = logging.getLogger("remediator.llm")
T = TypeVar("T", bound=BaseModel)
SUBMIT_TOOL = "submit_answer"


@dataclass(frozen=True)
class LLMUsage:
    """Tokens one chat used (summed over its calls), as reported by the endpoint."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: LLMUsage) -> LLMUsage:
        return LLMUsage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens,
                        self.calls + other.calls)


class _LLMErrorMixin:
    usage: LLMUsage
    short: str


class LLMUnavailable(TemporaryError, _LLMErrorMixin):
    """Endpoint unreachable, rate limited, 5xx or timed out after the retries."""

    def __init__(self, message: str, *, short: str, usage: LLMUsage, source: str = "", delay: float = 1.0) -> None:
        super().__init__(message, source=source, delay=delay)
        self.short, self.usage = scrub(short), usage


class LLMRejected(PermanentError, _LLMErrorMixin):
    """The endpoint refused the request (400, 401, 403, 404, ...): config or compatibility problem."""

    def __init__(self, message: str, *, short: str, usage: LLMUsage, source: str = "") -> None:
        super().__init__(message, source=source)
        self.short, self.usage = scrub(short), usage


class LLMInvalidOutput(PermanentError, _LLMErrorMixin):
    """The model answered, but not with the structure asked for (or it was cut off at max_tokens)."""

    def __init__(self, message: str, *, short: str, usage: LLMUsage, source: str = "") -> None:
        super().__init__(message, source=source)
        self.short, self.usage = scrub(short), usage


class LLMBudgetExceeded(PermanentError, _LLMErrorMixin):
    """The chat would go over its token budget."""

    def __init__(self, message: str, *, short: str, usage: LLMUsage, source: str = "") -> None:
        super().__init__(message, source=source)
        self.short, self.usage = scrub(short), usage


LLMError = LLMUnavailable | LLMRejected | LLMInvalidOutput | LLMBudgetExceeded


@dataclass(frozen=True)
class ToolSpec:
    """A read-only tool the model may call. ``handler`` gets the validated arguments and returns
    the text given back to the model (the caller fences untrusted content in it)."""

    name: str
    description: str
    args_model: type[BaseModel]
    handler: Callable[[BaseModel], str]

    def param(self) -> dict[str, Any]:
        import openai  # imported on first use: a daemon without an LLM never pays its ~1 s import

        return dict(openai.pydantic_function_tool(self.args_model, name=self.name, description=self.description))


@dataclass
class ChatResult(Generic[T]):
    parsed: T
    usage: LLMUsage
    turns: int
    tool_calls: list[str] = field(default_factory=list)  # names, in call order
    model: str = ""


def strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The strict JSON schema OpenAI structured outputs expect (via the SDK's public helper)."""
    import openai

    return dict(openai.pydantic_function_tool(model)["function"]["parameters"])


def estimate_tokens(obj: object) -> int:
    """A cheap upper-ish estimate (4 characters a token) used before a call is made."""
    text = obj if isinstance(obj, str) else json.dumps(obj, default=str)
    return len(text) // 4 + 1


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)


class OpenAIChat:
    """Chat completions against an OpenAI-compatible endpoint, with our own bounded retries."""

    def __init__(self, *, base_url: str | None, model: str, api_key: str | None, timeout_s: float = 30,
                 max_tokens: int = 1024, retries: int = 2, max_retry_after_s: float = 20.0, backoff_s: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep, temperature: float | None = 0.0,
                 structured: Literal["json_schema", "tool"] = "json_schema",
                 max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens") -> None:
        import openai

        self.base_url = (base_url or "https://api.openai.com/v1").rstrip("/")
        self.model = model
        self.timeout_s = float(timeout_s)
        self.max_tokens = int(max_tokens)
        self.retries = max(0, int(retries))
        self.max_retry_after_s = float(max_retry_after_s)
        self.backoff_s = float(backoff_s)
        self.temperature = temperature
        self.structured = structured
        self.max_tokens_param = max_tokens_param
        self._sleep = sleep
        self._key = api_key or ""
        # local servers (Ollama, llama.cpp, vLLM) take any key; the SDK insists on one
        self._client = openai.OpenAI(base_url=self.base_url, api_key=api_key or "not-needed",
                                     timeout=self.timeout_s, max_retries=0)

    @property
    def name(self) -> str:
        return f"{self.model} at {scrub(self.base_url)}"

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------------ one chat

    def chat(self, *, messages: Sequence[dict[str, Any]], response_model: type[T], tools: Sequence[ToolSpec] = (),
             max_turns: int = 6, max_tool_calls: int = 8, token_budget: int | None = None) -> ChatResult[T]:
        """Run the conversation until the model gives its structured answer (or a limit is hit)."""
        msgs: list[dict[str, Any]] = [dict(m) for m in messages]
        by_name = {t.name: t for t in tools}
        tool_params = [t.param() for t in tools]
        schema = strict_schema(response_model)
        if self.structured == "tool":
            tool_params.append({"type": "function", "function": {
                "name": SUBMIT_TOOL, "strict": True, "parameters": schema,
                "description": "Give your final answer. Call this exactly once, when you are done."}})
        usage = LLMUsage()
        called: list[str] = []
        for turn in range(1, max_turns + 1):
            last = turn == max_turns or len(called) >= max_tool_calls
            body: dict[str, Any] = {"model": self.model, "messages": msgs}
            if tool_params:
                body["tools"] = tool_params
                body["tool_choice"] = ("none" if last else "auto") if self.structured == "json_schema" else (
                    {"type": "function", "function": {"name": SUBMIT_TOOL}} if last else "required")
            if self.structured == "json_schema":
                body["response_format"] = {"type": "json_schema", "json_schema": {
                    "name": response_model.__name__, "schema": schema, "strict": True}}
            max_out = self.max_tokens
            if token_budget is not None:
                need = estimate_tokens(body)
                left = token_budget - usage.total_tokens
                if left - need < min(64, self.max_tokens):
                    raise LLMBudgetExceeded(
                        f"LLM {self.name}: token budget {token_budget} per incident would be exceeded "
                        f"(used {usage.total_tokens}, next prompt ~{need})",
                        short=f"token budget {token_budget}/incident exhausted ({usage.total_tokens} used, next "
                              f"prompt ~{need})", usage=usage, source=self.base_url)
                max_out = min(max_out, left - need)
            body[self.max_tokens_param] = max_out
            if self.temperature is not None:
                body["temperature"] = self.temperature
            resp = self._create(body, usage)
            u = getattr(resp, "usage", None)
            usage = usage + LLMUsage(int(getattr(u, "prompt_tokens", 0) or 0),
                                     int(getattr(u, "completion_tokens", 0) or 0), 1)
            if not resp.choices:
                raise self._invalid("the response has no choices", usage)
            choice = resp.choices[0]
            msg = choice.message
            if choice.finish_reason == "length":
                raise self._invalid(f"the answer was cut off at max_tokens={max_out}", usage)
            if getattr(msg, "refusal", None):
                raise self._invalid(f"the model refused: {str(msg.refusal)[:200]}", usage)
            calls = list(msg.tool_calls or [])
            submit = next((c for c in calls if getattr(c, "function", None) and c.function.name == SUBMIT_TOOL), None)
            if self.structured == "tool" and submit is not None:
                return ChatResult(self._parse(submit.function.arguments, response_model, usage), usage, turn,
                                  called, getattr(resp, "model", "") or self.model)
            if calls:
                msgs.append({"role": "assistant", "content": msg.content or None, "tool_calls": [
                    {"id": c.id, "type": "function",
                     "function": {"name": c.function.name, "arguments": c.function.arguments}}
                    for c in calls if getattr(c, "function", None) is not None]})
                for c in calls:
                    if getattr(c, "function", None) is None:
                        continue
                    called.append(c.function.name)
                    msgs.append({"role": "tool", "tool_call_id": c.id,
                                 "content": self._run_tool(by_name, c.function.name, c.function.arguments)})
                continue
            if self.structured == "tool":
                raise self._invalid("the model answered without calling submit_answer", usage)
            return ChatResult(self._parse(msg.content or "", response_model, usage), usage, turn, called,
                              getattr(resp, "model", "") or self.model)
        raise self._invalid(f"no final answer after {max_turns} turns ({len(called)} tool calls)", usage)

    def _run_tool(self, by_name: dict[str, ToolSpec], name: str, arguments: str) -> str:
        spec = by_name.get(name)
        if spec is None:
            log.warning("LLM %s called unknown tool %r", self.name, name[:80])
            return json.dumps({"error": f"unknown tool {name[:80]!r}; available: {sorted(by_name)}. "
                                        "Tools are read-only; nothing was executed."})
        try:
            args = spec.args_model.model_validate_json(arguments or "{}")
        except ValidationError as e:
            return json.dumps({"error": f"invalid arguments for {name}: {_first_error(e)}"})
        try:
            return spec.handler(args)
        except (TemporaryError, PermanentError) as e:
            return json.dumps({"error": f"{name} failed: {e}"})

    def _parse(self, text: str, model: type[T], usage: LLMUsage) -> T:
        m = _FENCE.match(text or "")
        raw = m.group(1) if m else (text or "")
        try:
            return model.model_validate_json(raw)
        except ValidationError as e:
            what = "not JSON" if any(x["type"] == "json_invalid" for x in e.errors()) else "JSON of the wrong shape"
            raise self._invalid(f"invalid output ({what} for {model.__name__}: {_first_error(e)})", usage) from None

    def _invalid(self, what: str, usage: LLMUsage) -> LLMInvalidOutput:
        return LLMInvalidOutput(self._clean(f"LLM {self.name}: {what}"), short=self._clean(what), usage=usage,
                                source=self.base_url)

    def _clean(self, text: str) -> str:
        if self._key and len(self._key) >= 4:
            text = text.replace(self._key, "***")
        return scrub(text)

    # ------------------------------------------------------------------ one HTTP call, retried

    def _create(self, body: dict[str, Any], usage: LLMUsage) -> Any:
        import openai

        attempts = self.retries + 1
        last_short, delay_hint = "", 1.0
        for attempt in range(attempts):
            wait: float | None = None
            try:
                return self._client.chat.completions.create(**body)
            except openai.RateLimitError as e:
                ra = retry_after_s(e.response.headers if e.response is not None else {})
                last_short = "rate limited (HTTP 429" + (f", Retry-After {ra:g}s)" if ra is not None else ")")
                if ra is not None and ra > self.max_retry_after_s:
                    raise LLMUnavailable(
                        self._clean(f"LLM {self.name}: {last_short}, longer than the {self.max_retry_after_s:g}s cap; "
                                    "giving up for now"),
                        short=f"{last_short} over the {self.max_retry_after_s:g}s cap", usage=usage,
                        source=self.base_url, delay=ra) from None
                wait = ra if ra is not None else self._backoff(attempt)
                delay_hint = wait
            except openai.APITimeoutError:
                last_short = f"timeout after {self.timeout_s:g}s"
            except openai.APIConnectionError as e:
                cause = type(e.__cause__ or e.__context__ or e).__name__
                last_short = (f"cannot reach the endpoint ({cause})" if "Connect" in cause else
                              f"connection broken mid-response ({cause})")
            except openai.APIStatusError as e:
                if e.status_code >= 500:
                    last_short = f"HTTP {e.status_code} from the endpoint"
                elif e.status_code in (408, 409):
                    last_short = f"HTTP {e.status_code} from the endpoint"
                else:
                    detail = _status_detail(e)
                    hint = " (check llm.api_key / api_key_file)" if e.status_code in (401, 403) else (
                        " (check llm.model)" if e.status_code == 404 else "")
                    raise LLMRejected(self._clean(f"LLM {self.name}: HTTP {e.status_code}: {detail}{hint}"),
                                      short=self._clean(f"HTTP {e.status_code} {detail[:120]}{hint}"), usage=usage,
                                      source=self.base_url) from None
            except openai.APIResponseValidationError:
                last_short = "invalid response body"
            except (ValueError, json.JSONDecodeError) as e:  # a 200 whose body is not JSON (truncated, garbage)
                last_short = f"invalid response body ({type(e).__name__})"
            if attempt + 1 < attempts:
                w = wait if wait is not None else self._backoff(attempt)
                log.warning("LLM %s: %s; retry %d/%d in %.1fs", self.name, last_short, attempt + 1, self.retries, w)
                self._sleep(w)
        raise LLMUnavailable(self._clean(f"LLM {self.name}: {last_short} ({attempts} attempts)"),
                             short=f"{last_short} ({attempts} attempts)", usage=usage, source=self.base_url,
                             delay=delay_hint)

    def _backoff(self, attempt: int) -> float:
        return float(min(self.backoff_s * 2.0**attempt, self.max_retry_after_s))


def retry_after_s(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date); None when absent."""
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000.0)
        ra = headers.get("retry-after")
    except AttributeError:
        return None
    if ra is None:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(str(ra))
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _status_detail(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:300]
        if isinstance(err, str):
            return err[:300]
    return str(getattr(e, "message", "") or e)[:300]


def _first_error(e: ValidationError) -> str:
    errs = e.errors()
    if not errs:
        return str(e)[:200]
    x = errs[0]
    loc = ".".join(str(p) for p in x.get("loc", ())) or "(root)"
    more = f" [+{len(errs) - 1} more]" if len(errs) > 1 else ""
    return f"{loc}: {x.get('msg', '')}"[:200] + more
