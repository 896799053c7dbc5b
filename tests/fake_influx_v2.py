"""A local HTTP endpoint speaking the InfluxDB v2 write protocol's replies, recording every request.

Used to test the v2 writer as a protocol contract (no InfluxDB 2.x server can be installed here).
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


@dataclass
class Recorded:
    path: str
    query: dict
    headers: dict
    body: bytes


@dataclass
class FakeInfluxV2:
    replies: list = field(default_factory=list)  # (status, headers, body) per request; 204 when exhausted
    requests: list = field(default_factory=list)

    def __enter__(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
                url = urlparse(self.path)
                fake.requests.append(Recorded(url.path, parse_qs(url.query), dict(self.headers), body))
                status, headers, text = fake.replies.pop(0) if fake.replies else (204, {}, "")
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

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
