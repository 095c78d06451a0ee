"""A real chat-completions HTTP server on 127.0.0.1 for tests and demos, answering deterministically.

``FakeLLM()`` starts ``http.server`` on a free port in a thread (``.url`` is the base URL, ``/v1``);
it reads the prompts of ``engine.explain.prompts`` and answers them like a model that believes
explanations of the form ``the token "X"``:

- explain: ``Explanation: the token "X"`` for the token marked <<…>> most often in the prompt;
- detection: 1 for excerpts containing X, else 0;
- fuzzing: 1 for excerpts whose every marked piece is X (or a run of Xs), else 0;
- simulation: 9 for tokens that are X (stripped), else 0; with ``logprobs`` it also sends
  top_logprobs (0.8 on the answer, 0.2 on the digit one away).

With ``response_format`` in a request it answers as the schema asks (``{"explanation": …}``,
``{"answers": [digits]}``, with logprobs on the digit tokens) when ``structured="json"`` (the default;
llama.cpp server, Ollama, vLLM, LM Studio), answers in free text when ``"ignore"``, and refuses the
request (HTTP 400 naming ``response_format``, as servers without it do) when ``"reject"``.
``wrong`` maps a question ("explain", "detection", "fuzzing", "simulation") to how many answers to
it come out malformed first (in free text or JSON, whichever the request asked for), so re-asks and
the scorers' independence can be tested.

An explanation that names no such token makes it answer 0 everywhere. ``script`` is a list of
faults served first, one per request: ``429`` / ``500`` (status codes; ``Retry-After: 0``),
``"broken"`` (invalid JSON), ``"sleep"`` (answers after ``sleep_s``), ``"refuse"`` (a refusal),
``"nonsense"`` (a reply that is not digits), ``"empty"``. ``requests`` keeps every request body,
``headers`` every request's headers. Nothing here leaves the machine.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["FakeLLM"]

_TARGET = re.compile(r'the token "(.+?)"')


class FakeLLM:
    def __init__(self, script: list | None = None, sleep_s: float = 2.0, logprobs: bool = True,
                 structured: str = "json", wrong: dict[str, int] | None = None):
        if structured not in ("json", "ignore", "reject"):
            raise ValueError(f"structured must be json, ignore or reject, not {structured!r}")
        self.structured = structured
        self.wrong = dict(wrong or {})
        self.script = list(script or [])
        self.sleep_s = sleep_s
        self.logprobs = logprobs
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                with fake._lock:
                    fake.requests.append(body)
                    fake.headers.append(dict(self.headers))
                    fault = fake.script.pop(0) if fake.script else None
                if self.path != "/v1/chat/completions":
                    return self._send(404, b'{"error": "not found"}')
                if isinstance(fault, int):
                    return self._send(fault, b'{"error": "busy"}', {"Retry-After": "0"})
                if fault == "broken":
                    return self._send(200, b'{"choices": [{"message": {"content": "1')
                if body.get("response_format") is not None and fake.structured == "reject":
                    return self._send(400, b'{"error": {"message": "Unrecognized request argument supplied: '
                                           b'response_format"}}')
                if fault == "sleep":
                    time.sleep(fake.sleep_s)
                as_json = body.get("response_format") is not None and fake.structured == "json"
                message, lines = fake.answer(body, fault, as_json)
                choice = {"index": 0, "message": message, "finish_reason": "stop"}
                if fault is None and lines is not None and body.get("logprobs") and fake.logprobs:
                    choice["logprobs"] = {"content": _logprobs(lines, as_json)}
                data = {"id": "fake", "object": "chat.completion", "model": body.get("model"), "choices": [choice],
                        "usage": {"prompt_tokens": len(json.dumps(body)) // 4, "completion_tokens": 5}}
                self._send(200, json.dumps(data).encode())

            def _send(self, status: int, payload: bytes, headers: dict | None = None):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):   # the client gave up (a timeout test)
                    pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FakeLLM":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------ answers
    def answer(self, body: dict, fault, as_json: bool = False) -> tuple[dict, list[int] | None]:
        question = _question(body["messages"][0]["content"])
        with self._lock:
            if self.wrong.get(question, 0) > 0:
                self.wrong[question] -= 1
                fault = fault or "wrong"
        if fault == "wrong":       # what small models do: the right kind of text, not the asked format
            content = ('{"answer": "The next token is probably a word"}' if as_json else
                       "The next token is probably a word.\nI think the unit fires on common words.")
            if question == "explain" and not as_json:
                content = ""
            return {"role": "assistant", "content": content or "Explanation:"}, None
        message, lines = self._answer(body, fault)
        if as_json and message.get("content") is not None and fault is None:
            if question == "explain":
                text = message["content"].split(":", 1)[1].strip()
                message = {"role": "assistant", "content": json.dumps({"explanation": text})}
            else:
                message = {"role": "assistant", "content": json.dumps({"answers": lines})}
        return message, lines

    def _answer(self, body: dict, fault) -> tuple[dict, list[int] | None]:
        if fault == "refuse":
            return {"role": "assistant", "content": None, "refusal": "I can't help with that."}, None
        if fault == "empty":
            return {"role": "assistant", "content": ""}, None
        if fault == "nonsense":
            return {"role": "assistant", "content": "Here is what I think about these excerpts."}, None
        system = body["messages"][0]["content"]
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")     # a re-ask adds more
        if system.startswith("You are a meticulous"):
            marked = Counter(m.strip() for m in re.findall(r"<<(.+?)>>", user))
            best = marked.most_common(1)[0][0] if marked else "?"
            return {"role": "assistant", "content": f'Explanation: the token "{best}"'}, None
        m = _TARGET.search(user.split("\n\n", 1)[0])
        target = m.group(1) if m else None
        if "whether the unit fires" in system:
            items = re.findall(r"^Excerpt \d+: (.*)$", user, flags=re.M)
            lines = [int(target is not None and target in t) for t in items]
        elif "some tokens are marked" in system:
            items = re.findall(r"^Excerpt \d+: (.*)$", user, flags=re.M)
            lines = [int(target is not None and all(set(p.split()) == {target} for p in re.findall(r"<<(.+?)>>", t)))
                     for t in items]
        else:
            items = re.findall(r"^Token \d+: (.*)$", user, flags=re.M)
            lines = [9 * int(target is not None and json.loads(t).strip() == target) for t in items]
        return {"role": "assistant", "content": "\n".join(str(v) for v in lines)}, lines


def _question(system: str) -> str:
    if system.startswith("You are a meticulous"):
        return "explain"
    if "whether the unit fires" in system:
        return "detection"
    return "fuzzing" if "some tokens are marked" in system else "simulation"


def _logprobs(lines: list[int], as_json: bool = False) -> list[dict]:
    """Output tokens: the digits one per line (or in ``{"answers": [d, d]}``), each digit 0.8 likely
    and the digit one away 0.2."""
    def plain(token):
        return {"token": token, "logprob": 0.0, "top_logprobs": [{"token": token, "logprob": 0.0}]}

    out = [plain('{"'), plain("answers"), plain('":'), plain(" [")] if as_json else []
    for i, v in enumerate(lines):
        alt = v - 1 if v > 0 else v + 1
        out.append({"token": str(v), "logprob": math.log(0.8),
                    "top_logprobs": [{"token": str(v), "logprob": math.log(0.8)},
                                     {"token": str(alt), "logprob": math.log(0.2)}]})
        if i < len(lines) - 1:
            out.append(plain(", " if as_json else "\n"))
    return out + ([plain("]}")] if as_json else [])
