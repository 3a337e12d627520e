"""A mock OpenAI-compatible chat server on 127.0.0.1, started and stopped by each test using it."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

MAX_REQUESTS = 50  # the mock refuses anything past this, so no loop can run away


class _Mock(BaseHTTPRequestHandler):
    mode = "ok"
    seen: list[dict] = []

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):  # noqa: N802
        n = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(n))
        self.seen.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
        )
        if len(self.seen) > MAX_REQUESTS or self.mode == "500":
            return self._send(500, b'{"error": "overloaded"}')
        if self.path != "/v1/chat/completions":
            return self._send(404, b'{"error": "no such route"}')
        if self.mode == "garbage":
            return self._send(200, b"<html>not json</html>")
        if self.mode == "nochoices":
            return self._send(200, b'{"id": "x"}')
        gene = re.search(r"human gene (\S+?):", body["messages"][-1]["content"]).group(1)
        text = f"{gene} answer {body['seed']} from {body['model']}"
        reply = {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}
        return self._send(200, json.dumps(reply).encode())

    def _send(self, code: int, payload: bytes):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def server():
    _Mock.seen = []
    _Mock.mode = "ok"
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Mock)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", _Mock
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
