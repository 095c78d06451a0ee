"""A client for any OpenAI-compatible chat-completions endpoint (Ollama, llama.cpp server, vLLM, LM
Studio, a hosted API), built on httpx.

``Endpoint`` says where and how (base URL, model, the environment variable holding the API key,
timeout, concurrency, retries); ``ChatClient.chat`` sends one request and returns a ``Reply``.
Retries: 429 and 5xx answers, timeouts, dropped connections and bodies that are not the protocol's
JSON are retried up to ``max_retries`` times with exponential backoff (a ``Retry-After`` header is
honoured, capped at ``max_backoff_s``). Then:

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
import os
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import httpx

from engine.errors import UserError
from engine.events import Cancelled, CancelToken

__all__ = ["Endpoint", "ChatClient", "Reply", "LLMError", "EndpointError", "RefusalError", "MalformedReply",
           "api_key_for"]

DEFAULT_KEY_ENV = "SUPERPOS_LLM_API_KEY"
KEYRING_SERVICE = "superpos"


class LLMError(UserError, RuntimeError):
    """Something about the language-model endpoint or its answers; the message says what."""


class EndpointError(LLMError):
    """The endpoint cannot be used: unreachable, refusing our key or model, or failing after retries."""


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

    def __post_init__(self):
        if not self.base_url.startswith(("http://", "https://")):
            raise EndpointError(f"endpoint URL must start with http:// or https://, not {self.base_url!r}")
        if not self.model:
            raise EndpointError("no model name given (e.g. --model llama3.1)")
        if self.concurrency < 1 or self.max_retries < 0 or self.timeout_s <= 0:
            raise EndpointError("concurrency must be >= 1, retries >= 0 and the timeout > 0")

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


class ChatClient:
    """One HTTP connection pool to an endpoint; safe to share between threads."""

    def __init__(self, endpoint: Endpoint, transport: httpx.BaseTransport | None = None):
        self.endpoint = endpoint
        headers = {"Content-Type": "application/json"}
        key = api_key_for(endpoint)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        limits = httpx.Limits(max_connections=endpoint.concurrency, max_keepalive_connections=endpoint.concurrency)
        self._http = httpx.Client(base_url=endpoint.base_url.rstrip("/") + "/", headers=headers,
                                  timeout=httpx.Timeout(endpoint.timeout_s), limits=limits, transport=transport)
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
        attempt = 0
        while True:
            if self.cancel is not None and self.cancel.cancelled:
                raise Cancelled("cancelled")
            t0 = time.perf_counter()
            try:
                response = self._http.post("chat/completions", json=body)
            except httpx.TimeoutException:
                problem, wait = f"no answer within {self.endpoint.timeout_s:g} s", None
            except httpx.TransportError as exc:
                if attempt >= min(self.endpoint.max_retries, 1) and isinstance(exc, httpx.ConnectError):
                    raise EndpointError(f"cannot reach {self.endpoint.host} ({exc}); is the model server "
                                        "running? (e.g. `ollama serve`)") from exc
                problem, wait = f"connection failed ({exc})", None
            else:
                status = response.status_code
                if status == 400 and want_logprobs and "logprob" in response.text.lower():
                    self.logprobs_supported = want_logprobs = False    # this server does not offer them
                    body.pop("logprobs", None)
                    body.pop("top_logprobs", None)
                    continue
                if status in (401, 403):
                    raise EndpointError(f"{self.endpoint.host} refused the API key (HTTP {status}); set "
                                        f"{self.endpoint.api_key_env} to a valid key")
                if status == 404:
                    raise EndpointError(f"{self.endpoint.host} has no chat-completions endpoint or no model "
                                        f"{self.endpoint.model!r} (HTTP 404: {_short(response.text)})")
                if status == 429 or status >= 500:
                    problem, wait = f"HTTP {status}", _retry_after(response)
                elif status >= 400:
                    raise EndpointError(f"{self.endpoint.host} rejected the request (HTTP {status}: "
                                        f"{_short(response.text)})")
                else:
                    try:
                        reply = _parse(response)
                    except MalformedReply as exc:
                        problem, wait = str(exc), None
                    else:
                        reply.seconds = time.perf_counter() - t0
                        self.usage.add(reply, attempt)
                        _check_refusal(reply)
                        return reply
            if attempt >= self.endpoint.max_retries:
                raise EndpointError(f"{self.endpoint.host}: {problem} after {attempt + 1} tries; "
                                    "try again later or lower --concurrency")
            delay = min(self.endpoint.backoff_s * 2 ** attempt, self.endpoint.max_backoff_s)
            time.sleep(min(wait, self.endpoint.max_backoff_s) if wait is not None else delay)
            attempt += 1


def _short(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


def _parse(response: httpx.Response) -> Reply:
    """The protocol's JSON -> Reply; MalformedReply if it is not that."""
    try:
        data = response.json()
        choice = data["choices"][0]
        message = choice.get("message") or {}
        content = message.get("content") or ""
        if not isinstance(content, str):
            raise TypeError("content is not text")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise MalformedReply(f"the answer is not chat-completions JSON ({type(exc).__name__}: "
                             f"{_short(response.text, 80)})") from exc
    usage = data.get("usage") or {}
    reply = Reply(content=content, finish_reason=str(choice.get("finish_reason") or ""),
                  prompt_tokens=int(usage.get("prompt_tokens") or 0),
                  completion_tokens=int(usage.get("completion_tokens") or 0))
    if message.get("refusal"):
        reply.finish_reason = "refusal"
        reply.content = str(message["refusal"])
    lp = choice.get("logprobs")
    if isinstance(lp, dict) and isinstance(lp.get("content"), list):
        try:
            reply.logprobs = [(str(t["token"]), {str(a["token"]): float(a["logprob"]) for a in t.get("top_logprobs") or []}
                               or {str(t["token"]): float(t.get("logprob", 0.0))}) for t in lp["content"]]
        except (KeyError, TypeError, ValueError):
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
