"""Every log format a user brings, read alike: the same drive in each gives the same stats, and a bad line costs
that line only (counted with its file and line number). Memory stays bounded on hostile input."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import can
import pytest

from conftest import T0, obd_drive, obd_response, real_log, run_cli, write_log
from firmware_bridge.sources.blf_blocks import blf_blocks
from firmware_bridge.sources.frame_blocks import read_blocks
from firmware_bridge.sources.logs import LogProblems, log_format, read_logs

pytestmark = pytest.mark.timeout(300)

#: Recordings of real cars made by other people, beside the repository (never inside it).
REAL_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "real"


@pytest.fixture
def real_logs():
    if not REAL_DIR.is_dir():
        pytest.skip(f"real recordings not present ({REAL_DIR} is absent)")
    return REAL_DIR

STATS_KEYS = ("distance_km", "fuel_used_l", "duration_s", "idle_time_s", "moving_time_s", "max_speed_kmh",
              "rpa_m_s2", "stops")


def stats_json(*args):
    result = run_cli("stats", *args, "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def write_gvret(path, frames, with_dir: bool = True) -> None:
    """A SavvyCAN GVRET CSV as SavvyCAN saves it (microsecond stamps, trailing comma)."""
    head = "Time Stamp,ID,Extended," + ("Dir," if with_dir else "") + "Bus,LEN," + ",".join(
        f"D{i}" for i in range(1, 9))
    lines = [head]
    for m in frames:
        cells = [str(round(m.timestamp * 1e6)), f"{m.arbitration_id:08X}", str(m.is_extended_id).lower(),
                 *(["Rx"] if with_dir else []), "0", str(len(m.data)), *(f"{b:02X}" for b in m.data)]
        lines.append(",".join(cells) + ",")
    path.write_text("\n".join(lines) + "\n")


def write_trc(path, frames, version: str) -> None:
    """A PCAN-View TRC of one version (python-can writes 1.0 and 2.1 only; 1.1, 1.3 and 2.0 are written here
    as PCAN-View writes them)."""
    start_days = T0 / 86400 + 25569  # OLE date of T0 (exact: T0 is a multiple of 1/8 day)
    lines = [f";$FILEVERSION={version}"]
    if version != "1.0":
        lines.append(f";$STARTTIME={start_days!r}")
    if version.startswith("2"):
        lines.append(";$COLUMNS=N,O,T,I,d,l,D")
    lines.append(";   Message Number ... (comment lines as PCAN-View writes them)")
    for n, m in enumerate(frames, 1):
        offset_ms = f"{(m.timestamp - (T0 if version != '1.0' else 0.0)) * 1000:.3f}"
        data = " ".join(f"{b:02X}" for b in m.data)
        ident = f"{m.arbitration_id:04X}"
        if version == "1.0":
            lines.append(f"{n:>6}) {offset_ms:>11} {ident:>8} {len(m.data)}  {data}")
        elif version == "1.1":
            lines.append(f"{n:>6}) {offset_ms:>11}  Rx  {ident:>8}  {len(m.data)}  {data}")
        elif version == "1.3":
            lines.append(f"{n:>6}) {offset_ms:>11} 1  Rx  {ident:>8} -  {len(m.data)}  {data}")
        else:
            lines.append(f"{n:>7} {offset_ms:>13} DT {ident:>8} Rx {len(m.data)} {data}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def drive():
    speeds = [min(i * 0.5, 60.0) for i in range(121)] + [60.0] * 30 + [60.0 - i * 0.5 for i in range(1, 121)]
    return obd_drive(speeds + [0.0] * 20)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, drive):
    log = tmp_path_factory.mktemp("ref") / "drive.log"
    write_log(log, drive)
    return stats_json(log)[0]


def assert_same_stats(stats, reference):
    assert stats["frames"] == reference["frames"]
    assert len(stats["trips"]) == len(reference["trips"]) == 1
    for key in STATS_KEYS:
        assert stats["total"][key] == pytest.approx(reference["total"][key], rel=1e-9, abs=1e-9), key
    assert stats["total"]["start"] == reference["total"]["start"]


@pytest.mark.parametrize("name", ["drive.asc", "drive.blf", "drive.csv", "drive.gvret.csv", "drive.mf4",
                                  "drive.trc", "drive.log.gz", "drive.gvret.csv.gz", "drive.nodir.csv",
                                  "drive.trc11.trc", "drive.trc13.trc", "drive.trc20.trc"])
def test_the_same_drive_in_every_format_gives_the_same_stats(tmp_path, drive, reference, name):
    if name == "drive.mf4":
        pytest.importorskip("asammdf")
    path = tmp_path / name
    if "gvret" in name or "nodir" in name:
        plain = tmp_path / "plain.csv"
        write_gvret(plain, drive, with_dir="nodir" not in name)
        path.write_bytes(__import__("gzip").compress(plain.read_bytes()) if name.endswith(".gz") else
                         plain.read_bytes())
    elif "trc1" in name or "trc2" in name:
        write_trc(path, drive, {"trc11": "1.1", "trc13": "1.3", "trc20": "2.0"}[name.split(".")[1]])
    else:
        write_log(path, drive)
    expected = {".csv": "SavvyCAN GVRET CSV" if ("gvret" in name or "nodir" in name) else "python-can CSV"}
    if ".csv" in name:
        assert log_format(path).name == expected[".csv"]
    stats, stderr = stats_json(path)
    assert "warning" not in stderr, stderr
    assert_same_stats(stats, reference)


def test_trc_1_0_relative_times_read_as_python_can_reads_them(tmp_path, drive):
    path = tmp_path / "v10.trc"
    write_trc(path, drive, "1.0")
    frames = list(read_logs([path], LogProblems()))
    assert [(m.arbitration_id, bytes(m.data)) for m in frames] == [(m.arbitration_id, bytes(m.data)) for m in drive]
    assert frames[5].timestamp == pytest.approx(drive[5].timestamp, abs=1e-6)


@pytest.mark.parametrize("name", ["subaru08_sidrive514_gvret.csv", "kona2021_dcan_car_scanner_elm327_gvret.csv"])
def test_real_gvret_csv_reads_with_nothing_malformed(real_logs, name):
    stats, stderr = stats_json(real_logs / name)
    assert stats["frames"]["malformed"] == 0, stderr
    assert stats["frames"]["total"] == sum(1 for _ in open(real_logs / name)) - 1
    assert "warning: " not in stderr or "unreadable" not in stderr


def test_real_gvret_frames_equal_the_candump_conversion(real_logs):
    """The Kona GVRET CSV and its candump conversion (time offset 2022-12-10T00:00Z) hold the same frames."""
    t_offset = 1670630400.0
    gvret = list(read_logs([real_logs / "kona2021_dcan_car_scanner_elm327_gvret.csv"], LogProblems()))
    candump = list(read_logs([real_logs / "kona2021_dcan_car_scanner_elm327.log"], LogProblems()))
    assert len(gvret) == len(candump) == 1845
    for a, b in zip(gvret, candump):
        assert (a.arbitration_id, a.is_extended_id, bytes(a.data)) == (b.arbitration_id, b.is_extended_id,
                                                                       bytes(b.data))
        assert a.timestamp + t_offset == pytest.approx(b.timestamp, abs=1e-6)


def test_candump_without_interface_column_and_can_fd(tmp_path):
    log = tmp_path / "fd.log"
    log.write_text("\n".join([
        "(1775034000.000000) can0 123#1122",
        "(1775034000.001000) 7E8#03410D28",  # no interface column
        "(1775034000.002000) can0 456##F" + "AB" * 64,  # CAN FD, flags nibble F (hex, as candump writes it)
        "(1775034000.003000) can0 12345678##1" + "01" * 12,
        "(1775034000.004000) can0 321#R",
        "(1775034000.005000) can0 7E8#03410D28 R",
    ]) + "\n")
    problems = LogProblems()
    frames = list(read_logs([log], problems))
    assert problems.count == 0, problems.examples
    assert [m.arbitration_id for m in frames] == [0x123, 0x7E8, 0x456, 0x12345678, 0x321, 0x7E8]
    assert frames[2].is_fd and frames[2].bitrate_switch and frames[2].error_state_indicator
    assert bytes(frames[2].data) == b"\xab" * 64 and frames[3].is_extended_id and frames[3].bitrate_switch
    assert frames[4].is_remote_frame
    blocks = list(read_blocks([log], LogProblems()))
    got = [(int(b.frame_id[r]), bytes(b.data[r, :b.length[r]]), float(b.t[r])) for b in blocks for r in range(len(b))]
    assert got == [(m.arbitration_id, bytes(m.data or b""), m.timestamp) for m in frames]


BAD_LINES = {
    ".log": ["(1775034050.000000) vcan0 7E8#ZZ", "123##G00 not a frame", "(1775034050.0) can0 7E8##X00"],
    ".gvret.csv": ["1000,000007E8,false,Rx,0,8,ZZ,00", "not,a,frame"],
    ".csv": ["1775034050.0,7E8,0,0,0,8", "nonsense"],
    ".trc": ["    99)   12345.600  Rx  07E8  8  ZZ 00 00 00 00 00 00 00"],
    ".asc": ["   50.000000 1  7E8             Rx   d 8 ZZ 00 00 00 00 00 00 00"],
}


@pytest.mark.parametrize("suffix", sorted(BAD_LINES))
def test_a_bad_line_anywhere_costs_that_line_only(tmp_path, drive, reference, suffix):
    rng = random.Random(suffix)
    path = tmp_path / f"drive{suffix}"
    if suffix == ".gvret.csv":
        write_gvret(path, drive)
    elif suffix == ".trc":
        write_trc(path, drive, "1.1")
    else:
        write_log(path, drive)
    lines = path.read_text().splitlines()
    first_frame = next(i for i, line in enumerate(lines) if "7DF" in line.upper() or "2015" in line) + 1
    for bad in BAD_LINES[suffix]:
        at = rng.randrange(first_frame, len(lines))  # after the header: anywhere among the frames
        corrupt = lines[:at] + [bad] + lines[at:]
        path.write_text("\n".join(corrupt) + "\n")
        result = run_cli("stats", path, "--format", "json")
        assert result.returncode == 0, result.stderr
        stats = json.loads(result.stdout)
        assert stats["frames"]["malformed"] == 1, (bad, result.stderr)
        assert stats["frames"]["total"] == reference["frames"]["total"] + 1
        assert f"{path}:{at + 1}:" in result.stderr, (bad, result.stderr)
        assert len(stats["trips"]) == 1
        for key in STATS_KEYS:
            assert stats["total"][key] == pytest.approx(reference["total"][key], rel=1e-9), key


def _stats_rss_mb(path) -> tuple[dict, str, float]:
    """stats in a child process of its own, and that process's peak RSS (VmHWM: of its own image only, where
    ru_maxrss would carry the parent's peak across exec)."""
    script = ("import sys\nfrom firmware_bridge.cli import main\ncode = main(sys.argv[1:])\n"
              "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
              "print(hwm, file=sys.stderr)\nsys.exit(code)")
    result = subprocess.run([sys.executable, "-c", script, "stats", str(path), "--format", "json"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr, int(result.stderr.strip().splitlines()[-1]) / 1024


def test_a_5_mb_line_is_skipped_without_reading_it_whole(tmp_path, drive, reference):
    log = tmp_path / "huge-line.log"
    write_log(log, drive)
    lines = log.read_text().splitlines()
    at = len(lines) // 2
    lines.insert(at, "(1775034050.000000) can0 7E8#" + "00" * 2_500_000)
    log.write_text("\n".join(lines) + "\n")
    stats, stderr, rss_mb = _stats_rss_mb(log)
    assert stats["frames"]["malformed"] == 1 and f"{log}:{at + 1}:" in stderr, stderr
    assert stats["frames"]["total"] == reference["frames"]["total"] + 1
    assert stats["total"]["distance_km"] == pytest.approx(reference["total"]["distance_km"], rel=1e-9)
    assert rss_mb < 150, rss_mb


def test_a_log_of_10000_byte_frames_is_counted_malformed_in_bounded_memory(tmp_path):
    log = tmp_path / "wide.log"
    line = "can0 7E8#" + "41" * 10_000
    with log.open("w") as f:
        for i in range(5000):
            f.write(f"({T0 + i * 0.01:.6f}) {line}\n")
    stats, stderr, rss_mb = _stats_rss_mb(log)
    assert stats["frames"] == {"total": 5000, "decoded": 0, "unknown": 0, "malformed": 5000}
    assert f"{log}:1:" in stderr
    assert rss_mb < 150, rss_mb


def test_frames_over_64_bytes_are_malformed_in_every_reader(tmp_path):
    log = tmp_path / "wide.gvret.csv"
    log.write_text("Time Stamp,ID,Extended,Dir,Bus,LEN,D1\n1000,000007E8,false,Rx,0,65," + ",".join(["00"] * 65) + "\n")
    problems = LogProblems()
    assert list(read_logs([log], problems)) == [] and problems.count == 1
    assert f"{log}:2" in problems.examples[0]


def test_logs_given_in_any_order_are_read_in_time_order(tmp_path, drive):
    day1, day2 = tmp_path / "day1.log", tmp_path / "day2.log"
    write_log(day1, drive)
    write_log(day2, [can.Message(timestamp=m.timestamp + 86400, arbitration_id=m.arbitration_id, data=m.data,
                                 is_extended_id=False) for m in drive])
    forwards, _ = stats_json(day1, day2)
    backwards, stderr = stats_json(day2, day1)
    assert len(backwards["trips"]) == 2 and backwards == forwards
    assert "time goes back" not in stderr


def test_time_going_backwards_inside_a_file_is_reported_with_the_frame(tmp_path, drive):
    frames = list(drive)
    frames[300].timestamp -= 5.0  # one frame stamped 5 s early
    log = tmp_path / "jump.log"
    write_log(log, frames)
    stats, stderr = stats_json(log)
    assert f"{log}: frame 301: time goes back" in stderr, stderr
    assert len(stats["trips"]) == 1
    problems = LogProblems()
    list(read_logs([log], problems))
    assert problems.time_steps_back == 1 and problems.count == 0
    problems = LogProblems()
    list(read_blocks([log], problems))
    assert problems.time_steps_back == 1 and "frame 301" in problems.time_examples[0]


def _same_as_blf_reader(blf: Path) -> int:
    """The block reader's frames of a BLF file equal python-can's own ``BLFReader``'s: times, IDs, flags, data."""
    expected = list(can.BLFReader(str(blf)))
    got = [(float(b.t[r]), int(b.frame_id[r]), bool(b.extended[r]), bool(b.remote[r]), bool(b.error[r]),
            bytes(b.data[r, :b.length[r]])) for b in blf_blocks(blf, LogProblems()) for r in range(len(b))]
    assert got == [(m.timestamp, 0 if m.is_error_frame else m.arbitration_id, m.is_extended_id, m.is_remote_frame,
                    m.is_error_frame, b"" if m.is_remote_frame else bytes(m.data)) for m in expected]
    return len(got)


def test_blf_reader_is_pinned_to_the_python_can_releases_it_was_checked_against():
    """blf_blocks reuses python-can's BLF internals: pyproject.toml allows only the releases it names."""
    import re
    import tomllib

    from firmware_bridge.sources.blf_blocks import CHECKED_PYTHON_CAN

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    [spec] = [d for d in project["dependencies"] if d.startswith("python-can")]
    low, high = re.fullmatch(r"python-can>=4\.(\d+),<4\.(\d+)", spec).groups()
    assert CHECKED_PYTHON_CAN == tuple(f"4.{minor}." for minor in range(int(low), int(high)))
    assert can.__version__.startswith(CHECKED_PYTHON_CAN)  # so the tests below run the numpy path


@pytest.mark.parametrize("name", ["civic19typer_turnonanddrive.log", "civic8th_40mph.trc",
                                  "yaris09_engineonaconoffstockecu.trc",
                                  *sorted(p.name for p in REAL_DIR.glob("*.blf*"))])
def test_blf_blocks_of_a_real_drive_equal_python_can(tmp_path, name):
    """A real car's recording as BLF (written by python-can's BLFWriter unless it is one): the same frames as
    python-can's BLFReader gives."""
    path = real_log(name)
    if ".blf" in path.suffixes:
        blf = path
    else:
        blf = tmp_path / "real.blf"
        with can.BLFWriter(str(blf)) as writer:
            for msg in read_logs([path], LogProblems()):
                writer.on_message_received(msg)
    assert _same_as_blf_reader(blf) > 1000


def test_blf_blocks_equal_python_can_frames_and_times(tmp_path):
    """The block reader's frames and times against python-can's own BLFReader, FD and error frames included."""
    frames = [obd_response(0x0D, [i % 200], T0 + i * 0.0123457) for i in range(3000)]
    frames[100:100] = [can.Message(timestamp=T0 + 1.5, arbitration_id=0x123, is_fd=True, data=bytes(range(48))),
                       can.Message(timestamp=T0 + 1.6, is_error_frame=True),
                       can.Message(timestamp=T0 + 1.7, arbitration_id=0x1ABCDE, is_extended_id=True, data=b"\1\2")]
    blf = tmp_path / "mixed.blf"
    write_log(blf, frames)
    assert _same_as_blf_reader(blf) == len(frames)
