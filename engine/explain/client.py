"""A client for any OpenAI-compatible chat-completions endpoint (Ollama, llama.cpp server, vLLM, LM
Studio, a hosted API), built on httpx.

``Endpoint`` says where and how (base URL, model, the environment variable holding the API key,
timeout, concurrency, retries); ``ChatClient.chat`` sends one request and returns a ``Reply``.
Retries: 429 and 5xx answers, timeouts, dropped connections and bodies that are not the protocol's
JSON are retried up to ``max_retries`` times with exponential backoff (a ``Retry-After`` header is
honoured, capped at ``max_backoff_s``). Bounds a hostile server cannot stretch
(``engine.explain.bounded_http``): each try has a wall-clock deadline of ``timeout_s`` (connect and the
whole answer, however slowly it drips), the whole call ``timeout_s × (max_retries + 1)`` (backoff
waits included), an answer is at most ``max_answer_bytes`` after decompression, and a cancel stops a
request within a quarter of a second. Redirects are not followed (an endpoint is a final URL). Then:

- ``EndpointError``: the server cannot be used (refused connection, 401/403/404, retries exhausted);
  the job stops.
- ``RefusalError``: the model declined (a ``refusal`` field, ``finish_reason == "content_filter"``,
  an empty answer); the unit is recorded as refused and the job goes on.
- ``MalformedReply``: an answer that is not what the prompt asked for (raised by the parsers in
  ``engine.explain.prompts``); the unit is recorded as failed.

The API key is read from the environment (``api_key_env``, default ``SUPERPOS_LLM_API_KEY``, then
``OPENAI_API_KEY``) or, if the ``keyring`` package is installed, from the OS keyring entry
``superpos`` / base URL. It is sent as a bearer token and never stored, logged or put in a repr.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import httpx

from engine.errors import UserError
from engine.events import Cancelled, CancelToken
from engine.explain.bounded_http import BodyTooLarge, RequestBounds, bounded_transport, read_capped

__all__ = ["Endpoint", "ChatClient", "Reply", "LLMError", "EndpointError", "RefusalError", "MalformedReply",
           "api_key_for"]

DEFAULT_KEY_ENV = "SUPERPOS_LLM_API_KEY"
MAX_TIMEOUT_S = 3600.0          # one request may take up to an hour (a slow CPU model on a long prompt)
MAX_RETRIES = 10
MAX_CONCURRENCY = 256
MAX_ANSWER_BYTES = 4 * 2**20    # a chat answer is kilobytes; 4 MiB leaves room for long logprob lists
KEYRING_SERVICE = "superpos"


class LLMError(UserError, RuntimeError):
    """Something about the language-model endpoint or its answers; the message says what."""


class EndpointError(LLMError):
    """The endpoint cannot be used: unreachable, refusing our key or model, or failing after retries.
    ``status`` is the HTTP status when the server rejected the request itself (4xx), else None."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class RefusalError(LLMError):
    """The model declined to answer."""


class MalformedReply(LLMError):
    """The answer does not have the shape the prompt asked for."""


@dataclass(frozen=True)
class Endpoint:
    base_url: str = "http://localhost:11434/v1"     # Ollama's default; llama.cpp server: http://localhost:8080/v1
    model: str = "llama3.1"
    api_key_env: str = DEFAULT_KEY_ENV
    timeout_s: float = 120.0
    concurrency: int = 4
    max_retries: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    temperature: float = 0.0
    logprobs: bool = True                            # ask for them in simulation; dropped if refused

    max_answer_bytes: int = MAX_ANSWER_BYTES

    def __post_init__(self):
        if not isinstance(self.base_url, str) or not self.base_url.startswith(("http://", "https://")):
            raise EndpointError(f"endpoint URL must start with http:// or https://, not {self.base_url!r}")
        try:
            host = httpx.URL(self.base_url).host
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            raise EndpointError(f"endpoint URL {self.base_url!r} is not a valid URL ({exc})") from None
        if not host:
            raise EndpointError(f"endpoint URL {self.base_url!r} names no host")
        if not self.model:
            raise EndpointError("no model name given (e.g. --model llama3.1)")
        _check_range("the timeout (--timeout)", self.timeout_s, 0.0, MAX_TIMEOUT_S, "seconds", open_low=True)
        _check_range("retries (--retries)", self.max_retries, 0, MAX_RETRIES, "", integer=True)
        _check_range("concurrency (--concurrency)", self.concurrency, 1, MAX_CONCURRENCY, "", integer=True)
        _check_range("backoff", self.backoff_s, 0.0, MAX_TIMEOUT_S, "seconds")
        _check_range("max backoff", self.max_backoff_s, 0.0, MAX_TIMEOUT_S, "seconds")
        _check_range("the answer size cap", self.max_answer_bytes, 1, 2**31, "bytes", integer=True)

    def replace(self, **changes: Any) -> "Endpoint":
        return replace(self, **changes)

    @property
    def host(self) -> str:
        """The endpoint without path or credentials (what a record and a log may name)."""
        url = httpx.URL(self.base_url)
        return f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")


def api_key_for(endpoint: Endpoint) -> str | None:
    """The API key: the environment variable, then OPENAI_API_KEY, then the OS keyring (if installed)."""
    for name in (endpoint.api_key_env, "OPENAI_API_KEY"):
        value = os.environ.get(name)
        if value:
            return value
    try:
        import keyring  # optional
    except ImportError:
        return None
    try:
        return keyring.get_password(KEYRING_SERVICE, endpoint.base_url.rstrip("/"))
    except Exception:       # a keyring backend that is not set up is no key, not a crash
        return None


@dataclass
class Reply:
    content: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    logprobs: list[tuple[str, dict[str, float]]] | None = None   # per output token: (token, {alt: logprob})
    seconds: float = 0.0


@dataclass
class Usage:
    """Totals over every request a client made (thread-safe)."""

    requests: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, reply: Reply, retries: int) -> None:
        with self._lock:
            self.requests += 1
            self.retries += retries
            self.prompt_tokens += reply.prompt_tokens
            self.completion_tokens += reply.completion_tokens
            self.seconds += reply.seconds


def _check_range(what: str, value, low, high, unit: str, integer: bool = False, open_low: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer:
        ok = float(value).is_integer()
    if ok:
        ok = (value > low if open_low else value >= low) and value <= high
    if not ok:
        kind = "a whole number" if integer else "a number"
        low_text = f"above {low:g}" if open_low else f"from {low:g}"
        raise EndpointError(f"{what} must be {kind} {low_text} to {high:g}{' ' + unit if unit else ''}, "
                            f"not {value!r}")


class ChatClient:
    """One HTTP connection pool to an endpoint; safe to share between threads."""

    def __init__(self, endpoint: Endpoint, transport: httpx.BaseTransport | None = None):
        self.endpoint = endpoint
        headers = {"Content-Type": "application/json"}
        key = api_key_for(endpoint)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        limits = httpx.Limits(max_connections=endpoint.concurrency, max_keepalive_connections=endpoint.concurrency)
        self._bounds = RequestBounds()
        self._http = httpx.Client(base_url=endpoint.base_url.rstrip("/") + "/", headers=headers,
                                  timeout=httpx.Timeout(endpoint.timeout_s), limits=limits, follow_redirects=False,
                                  transport=transport or bounded_transport(self._bounds, limits))
        self.logprobs_supported = endpoint.logprobs
        self.usage = Usage()
        self.cancel: CancelToken | None = None     # set by a job: no new request once it is cancelled

    def __repr__(self) -> str:
        return f"ChatClient({self.endpoint.host!r}, model={self.endpoint.model!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "ChatClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------ requests
    def chat(self, messages: Sequence[dict[str, str]], max_tokens: int = 256, logprobs: bool = False,
             response_format: dict[str, Any] | None = None) -> Reply:
        """One chat completion (retried as the module docstring says); ``response_format`` is sent as given."""
        body: dict[str, Any] = {"model": self.endpoint.model, "messages": list(messages), "max_tokens": max_tokens,
                                "temperature": self.endpoint.temperature}
        if response_format is not None:
            body["response_format"] = response_format
        want_logprobs = logprobs and self.logprobs_supported
        if want_logprobs:
            body.update(logprobs=True, top_logprobs=10)
        ep = self.endpoint
        give_up_at = time.monotonic() + ep.timeout_s * (ep.max_retries + 1)
        attempt = 0
        while True:
            self._raise_if_cancelled()
            t0 = time.perf_counter()
            self._bounds.start(min(time.monotonic() + ep.timeout_s, give_up_at), self.cancel)
            try:
                status, text, response = self._post(body)
            except httpx.TimeoutException:
                self._raise_if_cancelled()
                # some bytes but not the whole answer in time: a server that drips or streams without end
                partial = "complete " if self._bounds.received else ""
                problem, wait = f"no {partial}answer within {ep.timeout_s:g} s", None
            except BodyTooLarge as exc:
                problem, wait = str(exc), None
            except httpx.DecodingError as exc:
                problem, wait = f"the answer's content encoding is broken ({exc})", None
            except httpx.RequestError as exc:
                self._raise_if_cancelled()
                if attempt >= min(ep.max_retries, 1) and isinstance(exc, httpx.ConnectError):
                    raise EndpointError(f"cannot reach {ep.host} ({exc}); is the model server "
                                        "running? (e.g. `ollama serve`)") from exc
                problem, wait = f"connection failed ({exc or type(exc).__name__})", None
            else:
                if status == 400 and want_logprobs and "logprob" in text.lower():
                    self.logprobs_supported = want_logprobs = False    # this server does not offer them
                    body.pop("logprobs", None)
                    body.pop("top_logprobs", None)
                    continue
                if 300 <= status < 400:
                    where = response.headers.get("location", "")
                    raise EndpointError(f"{ep.host} answered with a redirect (HTTP {status}"
                                        f"{' to ' + _short(where, 80) if where else ''}); give the final URL "
                                        "as the endpoint")
                if status in (401, 403):
                    raise EndpointError(f"{ep.host} refused the API key (HTTP {status}); set "
                                        f"{ep.api_key_env} to a valid key")
                if status == 404:
                    raise EndpointError(f"{ep.host} has no chat-completions endpoint or no model "
                                        f"{ep.model!r} (HTTP 404: {_short(text)})")
                if status == 429 or status >= 500:
                    problem, wait = f"HTTP {status}", _retry_after(response)
                elif status >= 400:
                    raise EndpointError(f"{ep.host} rejected the request (HTTP {status}: {_short(text)})", status)
                else:
                    try:
                        reply = _parse(text)
                    except MalformedReply as exc:
                        problem, wait = str(exc), None
                    else:
                        reply.seconds = time.perf_counter() - t0
                        self.usage.add(reply, attempt)
                        _check_refusal(reply)
                        return reply
            delay = min(ep.backoff_s * 2 ** attempt, ep.max_backoff_s)
            delay = min(wait, ep.max_backoff_s) if wait is not None else delay
            if attempt >= ep.max_retries or time.monotonic() + delay >= give_up_at:
                raise EndpointError(f"{ep.host}: {problem} after {attempt + 1} tries; "
                                    "try again later or lower --concurrency")
            self._sleep(delay)
            attempt += 1

    def _post(self, body: dict[str, Any]) -> tuple[int, str, httpx.Response]:
        """POST within the bounds: (status, the decoded text, the response for its headers)."""
        with self._http.stream("POST", "chat/completions", json=body) as response:
            raw = read_capped(response.iter_bytes(), self.endpoint.max_answer_bytes)
            return response.status_code, raw.decode(response.encoding or "utf-8", errors="replace"), response

    def _raise_if_cancelled(self) -> None:
        if self.cancel is not None and self.cancel.cancelled:
            raise Cancelled("cancelled")

    def _sleep(self, seconds: float) -> None:
        """A backoff wait that a cancel cuts short."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self._raise_if_cancelled()
            time.sleep(min(left, 0.1))
        self._raise_if_cancelled()


def _short(text: str, n: int = 160) -> str:
    """A server's text shortened for a message: one line, control and bidi characters dropped."""
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


def _count(value: Any) -> int:
    """A token count from ``usage``: a finite non-negative number, else 0 (a server's own bookkeeping)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return 0
    return int(min(value, 2**53))


def _logprob(value: Any) -> float:
    value = float(value)
    if not math.isfinite(value) or value > 1e-6:     # a log-probability is <= 0
        raise ValueError(f"not a log-probability: {value!r}")
    return min(value, 0.0)


def _parse(text: str) -> Reply:
    """The protocol's JSON -> Reply; MalformedReply if it is not that."""
    try:
        data = json.loads(text)
        choice = data["choices"][0]
        message = choice.get("message") or {}
        content = message.get("content") or ""
        if not isinstance(content, str):
            raise TypeError("content is not text")
        usage = data.get("usage") or {}
        if not isinstance(usage, dict):
            usage = {}
    except RecursionError:
        raise MalformedReply("the answer is JSON nested too deeply to be chat-completions JSON") from None
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise MalformedReply(f"the answer is not chat-completions JSON ({type(exc).__name__}: "
                             f"{_short(text, 80)})") from exc
    reply = Reply(content=content, finish_reason=str(choice.get("finish_reason") or ""),
                  prompt_tokens=_count(usage.get("prompt_tokens")),
                  completion_tokens=_count(usage.get("completion_tokens")))
    if message.get("refusal"):
        reply.finish_reason = "refusal"
        reply.content = str(message["refusal"])
    lp = choice.get("logprobs")
    if isinstance(lp, dict) and isinstance(lp.get("content"), list):
        try:
            reply.logprobs = [(str(t["token"]), {str(a["token"]): _logprob(a["logprob"]) for a in t.get("top_logprobs") or []}
                               or {str(t["token"]): _logprob(t.get("logprob", 0.0))}) for t in lp["content"]]
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            reply.logprobs = None      # unusable logprobs: fall back to the text
    return reply


def _check_refusal(reply: Reply) -> None:
    if reply.finish_reason in ("refusal", "content_filter"):
        raise RefusalError(f"the model declined: {_short(reply.content, 100) or reply.finish_reason}")
    if not reply.content.strip():
        raise RefusalError("the model gave an empty answer")


def dumps_messages(messages: Sequence[dict[str, str]]) -> str:
    """Messages as one JSON string (for counting characters in estimates)."""
    return json.dumps(list(messages), ensure_ascii=False)
