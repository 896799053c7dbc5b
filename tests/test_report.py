"""The trip report renders: headless Chromium opens the HTML with no console errors and takes a screenshot;
the PNG is a real, non-trivial image."""

import re
import shutil
import struct
import subprocess

import pytest

from firmware_bridge.sim import write_log

from conftest import run_cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def screenshot(page, out, profile_dir):
    """Chromium headless, as locked down as this machine needs; console messages go to stderr."""
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile_dir}", "--enable-logging=stderr", "--v=0", f"--screenshot={out}",
         "--window-size=1280,1400", page.as_uri()], capture_output=True, text=True, timeout=120)
    return [line for line in result.stderr.splitlines() if ":CONSOLE" in line]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    log = tmp / "drive.log"
    write_log(log, "wltc-jp", broadcast=False)
    result = run_cli("report", log, "-o", tmp / "trip.html", "--png", tmp / "trip.png", "--title", "Sunday drive")
    assert result.returncode == 0, result.stderr
    return tmp


def test_html_is_self_contained_with_plots_and_table(report):
    text = (report / "trip.html").read_text()
    assert text.count("<svg") == 3  # speed/fuel over time, km/L per domain, speed bands
    assert "<script" not in text and not re.search(r'(src|href)="(https?:)?//', text)  # nothing to fetch
    assert "Sunday drive" in text and "speed_density" in text and "<table>" in text


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is installed by `make test`")
def test_chromium_renders_report_without_console_errors(report, tmp_path):
    shot = tmp_path / "shot.png"
    assert screenshot(report / "trip.html", shot, tmp_path / "profile") == []
    width, height = png_size(shot)
    assert (width, height) == (1280, 1400) and shot.stat().st_size > 30_000
    broken = tmp_path / "broken.html"  # the check itself can fail
    broken.write_text("<html><body><script>missingFunction();</script></body></html>")
    assert screenshot(broken, tmp_path / "broken.png", tmp_path / "profile2")


def test_png_is_non_trivial(report):
    width, height = png_size(report / "trip.png")
    assert width >= 1000 and height >= 700
    assert (report / "trip.png").stat().st_size > 50_000


def test_report_needs_a_trip(tmp_path):
    log = tmp_path / "empty.log"
    log.write_text("(1775034000.000000) can0 123#00\n")
    result = run_cli("report", log, "-o", tmp_path / "r.html")
    assert result.returncode == 2 and "no trip found" in result.stderr


def test_catalog_marks_come_from_the_profiles_catalog():
    """The domain chart marks the catalog's WLTC phase figure for each domain the profile quotes."""
    from dataclasses import replace

    from firmware_bridge.sinks.report import _catalog
    from firmware_bridge.vehicles import Catalog, load_vehicle

    profile = replace(load_vehicle(), catalog=Catalog(wltc_low_km_per_l=20.1, wltc_high_km_per_l=24.3))
    assert _catalog(profile) == {"urban": 20.1, "motorway": 24.3}
    assert _catalog(load_vehicle()) == {}


def test_report_draws_the_gps_track(tmp_path):
    """A drive with GPS (here a GPS-only truck's NMEA log): the report has the track, in the HTML and the PNG."""
    from firmware_bridge.sim.gps import write_nmea

    log = tmp_path / "truck.nmea"
    write_nmea(log, "wltc-jp")
    result = run_cli("report", log, "--vehicle", "gps-only", "-o", tmp_path / "trip.html", "--png",
                     tmp_path / "trip.png")
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "trip.html").read_text()
    assert page.count("<svg") == 4 and "Track (GPS)" in page
    width, height = png_size(tmp_path / "trip.png")
    assert width > 2 * height  # three plots side by side under the time plot
