"""A local HTTP endpoint speaking InfluxDB's write replies, recording every request.

Used to test the v2 writer as a protocol contract (no InfluxDB 2.x server can be installed here), and as a small
stub in front of the real InfluxDB 1.x for the fault tests: per request it answers itself (404, 413, 400,
401...) or passes the write on to the real server (``upstream``), so what is delivered is counted there.
"""

from __future__ import annotations

import gzip
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


@dataclass
class Recorded:
    path: str
    query: dict
    headers: dict
    body: bytes

    @property
    def lines(self) -> list[str]:
        return self.body.decode().splitlines()


@dataclass
class FakeInfluxV2:
    replies: list = field(default_factory=list)  # (status, headers, body) per request; then `answer`, then 204
    requests: list = field(default_factory=list)
    #: (the request) -> (status, headers, body) to answer it here, or None to pass it on to ``upstream``
    answer: Callable[[Recorded], tuple[int, dict, str] | None] = lambda request: None
    upstream: str | None = None

    def __enter__(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
                url = urlparse(self.path)
                recorded = Recorded(url.path, parse_qs(url.query), dict(self.headers), body)
                fake.requests.append(recorded)
                reply = fake.replies.pop(0) if fake.replies else fake.answer(recorded)
                status, headers, text = reply or fake.forward(self.path, raw, dict(self.headers))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                payload = text.encode()
                self.send_header("Content-Length", str(len(payload)))
                if payload:
                    self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def forward(self, path: str, raw: bytes, headers: dict) -> tuple[int, dict, str]:
        if self.upstream is None:
            return 204, {}, ""
        keep = {k: v for k, v in headers.items() if k.lower() in ("content-type", "content-encoding")}
        request = urllib.request.Request(self.upstream + path, data=raw, headers=keep, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, {}, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, {}, exc.read().decode()

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
