"""One question to the model whose answer has a known shape, asked so that small local models answer it.

Small models (the 100M–8B ones people run under Ollama, llama.cpp, LM Studio, vLLM) often ignore an
output format written in a prompt. So ``Asker.ask``:

1. requests *structured output* — ``response_format`` with a JSON schema (``{"answers": [0, 1, …]}``
   of exactly n items, ``{"explanation": "…"}``), which those servers enforce with a grammar while
   decoding — as long as the server has not refused it. A server that answers HTTP 400 naming
   ``response_format`` (or the schema) is remembered: no later request of this ``Asker`` sends it.
2. reads an answer that is a JSON object with the JSON parser, any other with the free-text parser
   (a server may ignore the option; a model may answer JSON unasked);
3. if neither reads it, asks once more with the parse error appended to the conversation, and reads
   that answer the same way; a second malformed answer is a ``MalformedReply``.

So a question costs one request, or two when the first answer is malformed (the estimate counts the
first and says "up to" twice that), plus one refused request the first time a server rejects
``response_format``.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable, Sequence

from engine.explain.client import ChatClient, EndpointError, MalformedReply, Reply

__all__ = ["Asker", "Question", "digits_schema", "explanation_schema", "REASK_FACTOR"]

REASK_FACTOR = 2        # each question may be asked twice (one re-ask after a malformed answer)

_FORMAT_WORDS = ("response_format", "json_schema", "schema", "grammar")


def digits_schema(n: int, top: int) -> dict[str, Any]:
    """A JSON schema: ``{"answers": [d, …]}`` with exactly n integers 0..top."""
    return {"type": "object", "additionalProperties": False, "required": ["answers"],
            "properties": {"answers": {"type": "array", "minItems": n, "maxItems": n,
                                       "items": {"type": "integer", "enum": list(range(top + 1))}}}}


def explanation_schema() -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": ["explanation"],
            "properties": {"explanation": {"type": "string", "maxLength": 300}}}


class Question:
    """What to ask and how to read the answer: ``parse_text(reply)`` reads free text, ``parse_json(data,
    reply)`` the decoded JSON object; both raise ``MalformedReply`` with what was wrong."""

    def __init__(self, messages: Sequence[dict[str, str]], schema: dict[str, Any], name: str,
                 parse_text: Callable[[Reply], Any], parse_json: Callable[[Any, Reply], Any], max_tokens: int,
                 logprobs: bool = False, json_hint: str = ""):
        self.messages, self.schema, self.name = list(messages), schema, name
        self.parse_text, self.parse_json = parse_text, parse_json
        self.max_tokens, self.logprobs, self.json_hint = max_tokens, logprobs, json_hint


class Asker:
    """Asks ``Question``s through one client; shared by the job's threads (the structured-output switch
    is one flag, set once)."""

    def __init__(self, client: ChatClient, structured: bool = True):
        self.client = client
        self.structured = structured
        self.reasks = 0
        self._lock = threading.Lock()

    def ask(self, q: Question) -> Any:
        messages = q.messages
        for attempt in range(REASK_FACTOR):
            reply, structured = self._send(q, messages)
            try:
                return self._read(q, reply)
            except MalformedReply as exc:
                if attempt == REASK_FACTOR - 1:
                    raise
                with self._lock:
                    self.reasks += 1
                hint = q.json_hint if structured else ""
                messages = q.messages + [
                    {"role": "assistant", "content": reply.content[:2000]},
                    {"role": "user", "content": f"That answer could not be read: {exc}. Answer again, exactly in "
                                                f"the format asked for{hint}, with nothing else."}]
        raise AssertionError("unreachable")

    def _send(self, q: Question, messages: list) -> tuple[Reply, bool]:
        while True:
            structured = self.structured
            response_format = ({"type": "json_schema",
                                "json_schema": {"name": q.name, "strict": True, "schema": q.schema}}
                               if structured else None)
            try:
                return self.client.chat(messages, max_tokens=q.max_tokens, logprobs=q.logprobs,
                                        response_format=response_format), structured
            except EndpointError as exc:
                text = str(exc).lower()
                if not (structured and exc.status == 400 and any(w in text for w in _FORMAT_WORDS)):
                    raise
                self.structured = False        # this server does not take it: free text from now on

    @staticmethod
    def _read(q: Question, reply: Reply) -> Any:
        """A JSON object is read as JSON (asked for or not), anything else as free text."""
        data = _json_object(reply.content)
        return q.parse_json(data, reply) if data is not None else q.parse_text(reply)


def _json_object(text: str) -> Any:
    """The JSON object an answer holds (also inside a ```json fence or after some words), else None."""
    text = text.strip()
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        data = json.loads(text[start:end + 1])
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
