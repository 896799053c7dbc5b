"""GPS as a source: NMEA logs alone (a GPS-only kei truck) and beside CAN logs, corrupt and fixless stretches."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from firmware_bridge.sim import write_log
from firmware_bridge.sim.cycles import Cycle
from firmware_bridge.sim.gps import GpsRoute, nmea_sentence, write_nmea

from conftest import run_cli

OUTAGE = range(300, 320)  # 20 s under a bridge: no fix
CORRUPT = range(700, 705)  # 5 s of sentences failing their checksum


def stats(*args):
    result = run_cli("stats", *args, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


@pytest.fixture(scope="module")
def gps_only(tmp_path_factory):
    path = tmp_path_factory.mktemp("gps") / "drive.nmea"
    truth = write_nmea(path, "wltc-jp", GpsRoute(outage=OUTAGE, corrupt=CORRUPT))
    return path, truth


def test_gps_only_drive_gives_trips_distance_bands_and_domains(gps_only):
    path, truth = gps_only
    out, stderr = stats(path, "--vehicle", "gps-only")
    (trip,) = out["trips"]
    assert trip["distance_km"] == pytest.approx(truth.route_km, rel=0.01)
    assert trip["duration_s"] == pytest.approx(1477, abs=2)
    assert sum(b["distance_km"] for b in trip["speed_bands"].values()) == pytest.approx(trip["distance_km"])
    domains = trip["speed_domains"]
    assert sum(d["distance_km"] for d in domains.values()) == pytest.approx(trip["distance_km"])
    assert domains["urban"]["distance_km"] > 0 and domains["motorway"]["distance_km"] > 0
    assert trip["max_speed_kmh"] == pytest.approx(97.4, abs=0.1)  # WLTC-H's top speed, from RMC in knots
    assert trip["rpa_m_s2"] > 0 and trip["fuel_used_l"] is None  # dynamics from GPS; fuel from fill-ups only
    (lat0, lon0), (lat1, lon1) = truth.positions[0], truth.positions[-1]
    assert (trip["start_lat"], trip["start_lon"]) == pytest.approx((lat0, lon0), abs=1e-6)
    assert (trip["end_lat"], trip["end_lon"]) == pytest.approx((lat1, lon1), abs=1e-6)
    # the fixless and corrupt stretches: counted, left out, bridged by the distance between their ends
    assert out["gps"] == {"fixes": truth.fixes, "no_fix": len(OUTAGE), "implausible": 0, "corrupt": 3 * len(CORRUPT)}
    assert out["frames"]["malformed"] == 3 * len(CORRUPT)
    first_bad = 1 + next(i for i, line in enumerate(path.read_text().splitlines()) if line.startswith("$GPRMC,091140"))
    assert f"drive.nmea:{first_bad}: not an NMEA sentence (ChecksumError)" in stderr  # 700 s into the drive
    assert trip["gaps"] == 2 and 0.1 < trip["gap_bridged_km"] < 0.5


def test_a_position_jump_is_counted_not_driven(tmp_path, gps_only):
    """A sentence with a valid checksum but a position 100 km off (a receiver glitch) adds no distance."""
    path, truth = gps_only
    lines = path.read_text().splitlines(keepends=True)
    second = next(i for i, line in enumerate(lines) if line.startswith("$GPRMC,091500"))  # 900 s in
    for n in (second, second + 1):  # the RMC and GGA of one second: latitude 19° -> 18°
        fields = lines[n][1:lines[n].index("*")].split(",")
        index = 3 if fields[0].endswith("RMC") else 2
        fields[index] = "18" + fields[index][2:]
        lines[n] = nmea_sentence(",".join(fields))
    bad = tmp_path / "glitch.nmea"
    bad.write_text("".join(lines))
    out, _ = stats(bad, "--vehicle", "gps-only")
    assert out["gps"]["implausible"] == 1
    assert out["trips"][0]["distance_km"] == pytest.approx(truth.route_km, rel=0.01)


def test_car_speed_outranks_gps_and_logs_are_time_aligned(tmp_path):
    """A CAN log and two NMEA logs of the same drive: distance from the car's speed exactly as without GPS,
    positions from the GPS, whatever order the files come in."""
    log = tmp_path / "car.log"
    write_log(log, "wltc-jp", pid_set="map")
    car, _ = stats(log)
    route = tmp_path / "route.nmea"
    truth = write_nmea(route, "wltc-jp")
    lines = route.read_text().splitlines(keepends=True)
    (tmp_path / "a.nmea").write_text("".join(lines[:1800]))
    (tmp_path / "b.nmea").write_text("".join(lines[1800:]))
    both, _ = stats(tmp_path / "b.nmea", log, tmp_path / "a.nmea")
    (trip,), (car_trip,) = both["trips"], car["trips"]
    assert trip["distance_km"] == car_trip["distance_km"]
    assert trip["fuel_used_l"] == car_trip["fuel_used_l"]
    assert (trip["start_lat"], trip["start_lon"]) == pytest.approx(truth.positions[0], abs=1e-6)
    assert (trip["end_lat"], trip["end_lon"]) == pytest.approx(truth.positions[-1], abs=1e-6)
    assert both["gps"]["fixes"] == truth.fixes and car_trip["start_lat"] is None


def test_decode_lists_gps_fixes_with_can_frames(tmp_path):
    route = tmp_path / "route.nmea"
    write_nmea(route, "wltc-jp")
    result = run_cli("decode", route)
    assert result.returncode == 0, result.stderr
    first = json.loads(result.stdout.splitlines()[0])
    assert first["message"] == "GPS" and set(first["signals"]) == {
        "lat", "lon", "alt_m", "speed_kmh", "heading_deg", "fix", "hdop", "satellites"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_reads_positions_from_a_real_gpsd(tmp_path):
    """Debian's gpsd fed by gpsfake with an NMEA log; `run` with no CAN bus (a GPS-only truck) reads gpsd's JSON
    on a loopback port and writes the positions into its vehicle points."""
    gpsfake = shutil.which("gpsfake")
    if gpsfake is None or shutil.which("gpsd", path=os.environ.get("PATH", "") + ":/usr/sbin") is None:
        pytest.skip("gpsd and gpsfake are not installed (Debian's gpsd and gpsd-clients; make test installs them)")
    drive = Cycle("drive", tuple([0.0] * 2 + [3.0 * i for i in range(12)] + [33.0 - 3.0 * i for i in range(12)] + [0.0] * 4))
    log = tmp_path / "receiver.nmea"
    truth = write_nmea(log, drive)
    port = _free_port()
    env = {**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin"}
    # gpsd waits for its first client before gpsfake feeds it: 0.1 s a sentence, 0.3 s a fix
    fake = subprocess.Popen([gpsfake, "-1", "-q", "-P", str(port), "-c", "0.1", str(log)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # gpsd listening
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        out = tmp_path / "points.lp"
        config = tmp_path / "agent.toml"
        config.write_text(f'[spool]\npath = "{tmp_path / "spool.db"}"\n[output]\nconsole = false\n')
        agent = subprocess.Popen([sys.executable, "-m", "firmware_bridge", "run", "-i", "none", "--gps",
                                  f"gpsd://127.0.0.1:{port}", "--vehicle", "gps-only", "--vehicle-id", "truck",
                                  "--out", str(out), "--config", str(config)], stderr=subprocess.PIPE, text=True,
                                 env={k: v for k, v in env.items() if not k.startswith("INFLUX_")})
        time.sleep(0.3 * len(drive.speeds_kmh) + 3)
        agent.send_signal(signal.SIGTERM)
        _, stderr = agent.communicate(timeout=60)
    finally:  # gpsfake and the gpsd it started: their own process group
        os.killpg(fake.pid, signal.SIGTERM)
        try:
            fake.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(fake.pid, signal.SIGKILL)
            fake.wait(10)
    assert agent.returncode == 0, stderr
    assert f"reading GPS fixes from gpsd://127.0.0.1:{port}" in stderr
    points = [line for line in out.read_text().splitlines() if line.startswith("vehicle,vehicle=truck ")]
    positions = [dict(kv.split("=") for kv in line.split(" ")[1].split(",")) for line in points]
    with_fix = [p for p in positions if "lat" in p]
    assert len(with_fix) >= 5, points
    # gpsd's first reports of a new receiver may come before its satellites (SKY) or its 3D fix: the last has all
    assert {"lat", "lon", "alt_m", "gps_speed_kmh", "heading_deg", "fix", "hdop", "satellites"} <= set(with_fix[-1])
    lats = [lat for lat, _ in truth.positions]
    for p in with_fix:  # positions the receiver logged (gpsd keeps 9 decimals; NMEA carried 5 of minutes)
        assert min(abs(float(p["lat"]) - lat) for lat in lats) < 1e-6
        assert float(p["fix"]) >= 2.0
    assert float(with_fix[-1]["fix"]) == 3.0 and float(with_fix[-1]["satellites"]) == 9.0
    # gpsd's first reports may also carry a position without a speed (it has not seen one yet): the last has it
    assert "speed_kmh" in with_fix[-1]
    speeds_kmh = [float(p["speed_kmh"]) for p in with_fix if "speed_kmh" in p]
    assert max(speeds_kmh) == pytest.approx(33.0, abs=0.1)  # GPS speed: the speed


def test_harsh_events_from_gps_speed(tmp_path):
    """With only a GPS, a hard launch and a hard stop are harsh events like a car's own speed gives them."""
    speeds = [0.0] * 5 + [12.0 * i for i in range(5)] + [48.0] * 60 + [48.0 - 12.0 * i for i in range(1, 5)] + [0.0] * 5
    log = tmp_path / "harsh.nmea"
    write_nmea(log, Cycle("harsh", tuple(speeds)))
    out, _ = stats(log, "--vehicle", "gps-only")
    (trip,) = out["trips"]
    assert trip["harsh_accel_events"] == 1 and trip["harsh_brake_events"] == 1
