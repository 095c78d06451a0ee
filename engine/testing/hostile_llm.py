"""A hostile chat-completions server on 127.0.0.1, for tests of the client's bounds.

``HostileLLM(mode)`` answers every request in one of the ways a broken or malicious server might
(``MODES``). It writes raw bytes on the socket (no http.server niceties), so it can drip headers,
lie about lengths and stream without end. Every loop is bounded by ``max_s`` (default 30 s) and
ends as soon as the client goes away, so a test that fails never leaves it running.
"""

from __future__ import annotations

import gzip
import json
import socket
import socketserver
import threading
import time

__all__ = ["HostileLLM", "MODES"]


def _answer(**extra) -> dict:
    body = {"choices": [{"message": {"role": "assistant", "content": "Explanation: the token \"a\""},
                         "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}
    body.update(extra)
    return body


def _json(obj) -> bytes:
    return json.dumps(obj).encode()


MODES = {
    "endless-body": "200 with chunked encoding, a chunk every 50 ms, never the last chunk",
    "endless-sse": "200 text/event-stream, a `data:` event every 50 ms, never [DONE]",
    "drip-headers": "the status line and headers one byte every 0.3 s",
    "huge-body": "a 64 MiB body of JSON whitespace with a correct Content-Length",
    "gzip-bomb": "a 3 MiB gzip body that inflates to 3 GiB (Content-Encoding: gzip)",
    "usage-words": "a good answer whose usage fields are the strings 'lots' / 'many'",
    "usage-huge": "a good answer whose usage fields are 1e999 (JSON infinity)",
    "logprobs-huge": "a good answer with logprobs of 1e6",
    "deep-json": "JSON nested 200,000 lists deep",
    "redirect-self": "307 to its own URL",
    "silent": "accepts the connection, reads the request, never answers",
    "esc-text": "a good answer whose content holds ESC sequences and a bidi override",
}


class HostileLLM:
    def __init__(self, mode: str, max_s: float = 30.0):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.mode, self.max_s = mode, max_s
        self.requests = 0
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                outer.requests += 1
                sock = self.request
                sock.settimeout(5)
                try:
                    _read_request(sock)
                    outer._serve(sock)
                except OSError:
                    pass        # the client went away: that is how most of these end

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "HostileLLM":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------ answers
    def _serve(self, sock: socket.socket) -> None:
        end = time.monotonic() + self.max_s
        mode = self.mode
        if mode == "endless-body":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            while time.monotonic() < end:
                sock.sendall(b"1\r\n \r\n")
                time.sleep(0.05)
        elif mode == "endless-sse":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            event = b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n'
            while time.monotonic() < end:
                sock.sendall(b"%x\r\n%s\r\n" % (len(event), event))
                time.sleep(0.05)
        elif mode == "drip-headers":
            for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: " + b"a" * 10_000:
                if time.monotonic() > end:
                    break
                sock.sendall(bytes([byte]))
                time.sleep(0.3)
        elif mode == "huge-body":
            size = 64 * 2**20
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % size)
            block = b" " * 2**20
            for _ in range(size // len(block)):
                sock.sendall(block)
        elif mode == "gzip-bomb":
            body = _gzip_bomb()
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body) + body)
        elif mode == "redirect-self":
            _send(sock, 307, b"", {"Location": self.url + "/chat/completions"})
        elif mode == "silent":
            while time.monotonic() < end:
                time.sleep(0.05)
        else:
            _send(sock, 200, self._body(mode))

    def _body(self, mode: str) -> bytes:
        if mode == "usage-words":
            return _json(_answer(usage={"prompt_tokens": "lots", "completion_tokens": "many"}))
        if mode == "usage-huge":
            return _json(_answer()).replace(b'"prompt_tokens": 3', b'"prompt_tokens": 1e999')
        if mode == "logprobs-huge":
            body = _answer()
            body["choices"][0]["logprobs"] = {"content": [{"token": "9", "logprob": 1e6,
                                                           "top_logprobs": [{"token": "9", "logprob": 1e6}]}]}
            return _json(body)
        if mode == "deep-json":
            return b"[" * 200_000 + b"]" * 200_000
        if mode == "esc-text":
            body = _answer()
            body["choices"][0]["message"]["content"] = "Explanation: \x1b]0;PWNED-TITLE\x07\x1b[2Jthe \u202etoken"
            return _json(body)
        raise AssertionError(mode)


def _read_request(sock: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return
        rest += chunk


def _send(sock: socket.socket, status: int, body: bytes, headers: dict | None = None) -> None:
    head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    sock.sendall(head.encode() + b"\r\n" + body)


_BOMB: bytes | None = None


def _gzip_bomb() -> bytes:
    global _BOMB
    if _BOMB is None:
        out = gzip.compress(b"\0" * 2**24, compresslevel=9)     # 16 MiB of zeros, ~16 KiB compressed
        # concatenated gzip members inflate one after another: 192 × 16 MiB = 3 GiB
        _BOMB = out * 192
    return _BOMB
