"""InfluxDB writers: the v2 API through influxdb-client, and the v1 ``/write`` endpoint.

Both take a batch of line protocol (millisecond precision) and either return (the server acknowledged it with
2xx) or raise :class:`WriteError` saying what the spool's sender should do: retry later (network error, TLS
error, 5xx, 429 with its Retry-After), split the batch (413: too large), set the batch aside (other 4xx, e.g. a
400 partial write: the server stored the good lines and rejected the rest), or stop and keep everything
(401/403: credentials; 404: no such database or bucket; nothing more will succeed until a person fixes them).
Neither writer keeps data in memory or retries on its own: the spool does that, durably. Credentials travel in
an ``Authorization`` header only, never in a URL, so no URL the agent prints or logs carries a secret.
"""

from __future__ import annotations

import base64
import gzip
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

RETRY, SPLIT, REJECT, STOP = "retry", "split", "reject", "stop"

#: Why a sender stops, by status: shown to the user in one line.
STOP_REASONS = {401: "credentials refused", 403: "credentials refused (no write permission)",
                404: "database or bucket not found"}


class WriteError(Exception):
    def __init__(self, kind: str, message: str, status: int | None = None, retry_after_s: float | None = None):
        super().__init__(message)
        self.kind, self.status, self.retry_after_s = kind, status, retry_after_s


def _retry_after_s(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: use our own back-off


def _server_message(body: str) -> str:
    """InfluxDB answers errors as JSON ({"code", "message"} in 2.x, {"error"} in 1.x): its message, else the text."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()
    if isinstance(data, dict):
        return str(data.get("message") or data.get("error") or body).strip()
    return body.strip()


def classify(status: int, message: str, retry_after: str | None = None) -> WriteError:
    """What a non-2xx status means for the spool."""
    text = f"HTTP {status}: {_server_message(message)[:300]}"
    if status in STOP_REASONS:
        return WriteError(STOP, f"{STOP_REASONS[status]} ({text})", status)
    if status == 429 or status >= 500:
        return WriteError(RETRY, text, status, _retry_after_s(retry_after))
    if status == 413:
        return WriteError(SPLIT, text, status)
    return WriteError(REJECT, text, status)


def unreachable(url: str, exc: BaseException) -> WriteError:
    """A network or TLS failure, with its reason (connection refused, certificate verify failed, timeout)."""
    reason = getattr(exc, "reason", None) or exc
    text = str(reason).strip() or type(reason).__name__
    return WriteError(RETRY, f"cannot reach {url}: {text[:300]}")


@dataclass(frozen=True)
class InfluxTarget:
    """Where points go. ``token`` is a secret: never logged, printed or stored in the spool."""

    url: str
    api: str = "v2"          # "v2" or "v1"
    org: str = ""
    bucket: str = ""         # v1: the database, or "db/rp"
    token: str = ""          # v2 token; v1: a token or "user:password"
    timeout_s: float = 10.0

    def __repr__(self) -> str:
        return f"InfluxTarget(url={self.url!r}, api={self.api!r}, org={self.org!r}, bucket={self.bucket!r})"

    def describe(self) -> str:
        where = f"org {self.org}, bucket {self.bucket}" if self.api == "v2" else f"database {self.bucket}"
        return f"InfluxDB {self.api} at {self.url} ({where})"


class V1Writer:
    """POST {url}/write?db=&rp=&precision=ms, gzip; user:password as HTTP Basic, anything else as a Token header."""

    def __init__(self, target: InfluxTarget) -> None:
        self.target = target
        db, _, rp = target.bucket.partition("/")
        params = {"db": db, "precision": "ms"}
        if rp:
            params["rp"] = rp
        self._headers = {"Content-Type": "text/plain; charset=utf-8", "Content-Encoding": "gzip"}
        if ":" in target.token:
            self._headers["Authorization"] = "Basic " + base64.b64encode(target.token.encode()).decode("ascii")
        elif target.token:
            self._headers["Authorization"] = f"Token {target.token}"
        self._url = target.url.rstrip("/") + "/write?" + urllib.parse.urlencode(params)

    def write(self, lines: bytes) -> None:
        request = urllib.request.Request(self._url, data=gzip.compress(lines), headers=self._headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.target.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            body = exc.read().decode("utf-8", "replace")
            raise classify(exc.code, body, exc.headers.get("Retry-After")) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:  # ValueError: http.client's bad responses
            raise unreachable(self.target.url, exc) from None

    def close(self) -> None:
        pass


class V2Writer:
    """influxdb-client's write API in synchronous mode: the spool, not the client, holds and retries data."""

    def __init__(self, target: InfluxTarget) -> None:
        try:
            from influxdb_client import InfluxDBClient
            from influxdb_client.client.write_api import SYNCHRONOUS
        except ImportError:  # pragma: no cover - depends on the installation
            from firmware_bridge.errors import InputError
            raise InputError("the InfluxDB v2 API needs influxdb-client: pip install 'firmware-bridge[influx]'")
        self.target = target
        self._client = InfluxDBClient(url=target.url, token=target.token, org=target.org, enable_gzip=True,
                                      timeout=int(target.timeout_s * 1000), retries=False)
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, lines: bytes) -> None:
        from influxdb_client import WritePrecision
        from influxdb_client.rest import ApiException

        try:
            self._api.write(bucket=self.target.bucket, org=self.target.org, record=lines,
                            write_precision=WritePrecision.MS)
        except ApiException as exc:
            if not exc.status:
                raise unreachable(self.target.url, exc) from None
            headers = exc.headers or {}
            body = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else str(exc.body or "")
            raise classify(exc.status, body or str(exc.reason or ""), headers.get("Retry-After")) from None
        except Exception as exc:  # noqa: BLE001 - urllib3 connection, TLS and timeout errors
            raise unreachable(self.target.url, exc) from None

    def close(self) -> None:
        self._client.close()


def make_writer(target: InfluxTarget) -> V1Writer | V2Writer:
    return V1Writer(target) if target.api == "v1" else V2Writer(target)
