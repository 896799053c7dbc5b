"""Line protocol as InfluxDB's reference defines it: escaping, field types, millisecond timestamps."""

from __future__ import annotations

from firmware_bridge.records import Point
from firmware_bridge.sinks import line_protocol
from firmware_bridge.sinks.line_protocol import LineProtocolFile, to_line


def test_escaping_types_and_time():
    point = Point("my trip,x", 1775034000.1234, {"speed kmh": 42.0, "count": 3, "ok": True, "fuel,source": 'a "b" \\c',
                                                "a=b": 1.5e-7},
                  {"vehicle": "kei 1,a=b", "band": "", "domain": "urban"})
    assert to_line(point) == ('my\\ trip\\,x,domain=urban,vehicle=kei\\ 1\\,a\\=b '
                              'speed\\ kmh=42.0,count=3i,ok=true,fuel\\,source="a \\"b\\" \\\\c",a\\=b=1.5e-07 '
                              '1775034000123')


def test_same_series_many_points():
    lines = [to_line(Point("vehicle", 1775034000 + i, {"speed_kmh": float(i)}, {"vehicle": "kei"}))
             for i in range(3)]
    assert lines == [f"vehicle,vehicle=kei speed_kmh={float(i)} {(1775034000 + i) * 1000}" for i in range(3)]


def test_a_live_file_reaches_the_disk_every_second(tmp_path, monkeypatch):
    """`run --out` is read while the car drives (tail -f, a crash): points must not wait in a buffer for long."""
    now = {"s": 100.0}
    monkeypatch.setattr(line_protocol.time, "monotonic", lambda: now["s"])
    path = tmp_path / "live.lp"
    sink = LineProtocolFile(path)
    point = Point("vehicle", 1775034000.0, {"speed_kmh": 1.0}, {"vehicle": "kei"})
    sink.write(point)
    assert path.read_text() == ""  # within the second: buffered, one write for many points in replay
    now["s"] += line_protocol.FLUSH_S
    sink.write(point)
    assert path.read_text().count("\n") == 2
    sink.close()
