"""Times for people in their own time zone, with its offset; JSON and InfluxDB stay in UTC."""

from __future__ import annotations

from datetime import datetime, timezone


def local(t: float) -> datetime:
    """Unix seconds as an aware datetime in the machine's time zone (``TZ`` or the system's)."""
    return datetime.fromtimestamp(t).astimezone()


def local_text(t: float, seconds: bool = True) -> str:
    """``2026-04-01 18:00:05 +0900``: a trip start or a fill-up as its owner reads the clock."""
    return local(t).strftime("%Y-%m-%d %H:%M:%S %z" if seconds else "%Y-%m-%d %H:%M %z")


def iso_local_text(iso_utc: str) -> str:
    """A stats JSON time (ISO 8601 UTC, ``...Z``) as :func:`local_text`."""
    return local_text(datetime.fromisoformat(iso_utc.replace("Z", "+00:00")).timestamp())


def iso_utc(t: float) -> str:
    """Unix seconds as ISO 8601 UTC (``2026-04-01T09:30:00Z``), as JSON output writes times."""
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse(text: str) -> float:
    """ISO 8601 to Unix seconds; a time written without a zone is local time. ValueError if it is not one."""
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (when if when.tzinfo else when.astimezone()).timestamp()
