"""A scripted Anthropic-compatible Messages API on loopback, standing in for the model.

``ScriptedAnthropic(turns)`` answers each ``POST /v1/messages`` with the next scripted
turn: a list of content blocks (``text(...)``, ``tool_use(...)``) sent as a streamed
(SSE) or plain JSON message, or an ``api_error(...)`` sent as an HTTP error. Requests
are kept in ``.requests`` so tests can read what the client sent back (tool results).
Side requests the Claude Code CLI makes with a small model (titles, summaries) get a
short text reply and do not consume the script. When the script runs out, the server
answers with an error, so a client that asks for more than was scripted fails fast.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count

USAGE_IN, USAGE_OUT = 120, 30


def text(value: str) -> dict:
    return {"type": "text", "text": value}


def tool_use(name: str, arguments: dict) -> dict:
    return {"type": "tool_use", "name": name, "input": arguments}


def api_error(status: int, kind: str, message: str) -> dict:
    return {"error": {"status": status, "type": kind, "message": message}}


class ScriptedAnthropic:
    def __init__(self, turns: list, model: str = "claude-sonnet-4-5"):
        self.turns = list(turns)
        self.model = model
        self.requests: list[dict] = []
        self.side_requests: list[dict] = []
        self._ids = count(1)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "ScriptedAnthropic":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def tool_results(self) -> list[dict]:
        """Every tool_result block the client sent back, in order (the last request holds the whole history)."""
        messages = self.requests[-1].get("messages", []) if self.requests else []
        return [block for message in messages
                if message["role"] == "user" and isinstance(message["content"], list)
                for block in message["content"] if block.get("type") == "tool_result"]

    def _next_turn(self, body: dict):
        with self._lock:
            if body.get("model") != self.model or not body.get("messages"):
                self.side_requests.append(body)
                return [text("ok")]
            self.requests.append(body)
            if not self.turns:
                return api_error(500, "api_error", "the scripted conversation has no more turns")
            return self.turns.pop(0)

    def _handler(self):
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.startswith("/v1/messages") or self.path.startswith("/v1/messages/count_tokens"):
                    return self._json(200, {"input_tokens": USAGE_IN})
                turn = scripted._next_turn(body)
                if isinstance(turn, dict) and "error" in turn:
                    error = turn["error"]
                    return self._json(error["status"], {"type": "error", "error": {"type": error["type"],
                                                                                   "message": error["message"]}})
                blocks = [dict(b, id=f"toolu_{next(scripted._ids):04d}") if b["type"] == "tool_use" else b for b in turn]
                stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
                message = {"id": f"msg_{next(scripted._ids):04d}", "type": "message", "role": "assistant",
                           "model": body.get("model"), "content": blocks, "stop_reason": stop, "stop_sequence": None,
                           "usage": {"input_tokens": USAGE_IN, "output_tokens": USAGE_OUT}}
                if body.get("stream"):
                    self._stream(message)
                else:
                    self._json(200, message)

            def _json(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, message: dict) -> None:
                events = [("message_start", {"message": dict(message, content=[], stop_reason=None,
                                                             usage={"input_tokens": USAGE_IN, "output_tokens": 1})})]
                for index, block in enumerate(message["content"]):
                    if block["type"] == "text":
                        start, delta = dict(block, text=""), {"type": "text_delta", "text": block["text"]}
                    else:
                        start, delta = dict(block, input={}), {"type": "input_json_delta",
                                                               "partial_json": json.dumps(block["input"])}
                    events += [("content_block_start", {"index": index, "content_block": start}),
                               ("content_block_delta", {"index": index, "delta": delta}),
                               ("content_block_stop", {"index": index})]
                events += [("message_delta", {"delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                                              "usage": {"output_tokens": USAGE_OUT}}),
                           ("message_stop", {})]
                data = "".join(f"event: {name}\ndata: {json.dumps(dict(payload, type=name))}\n\n"
                               for name, payload in events).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
