"""`learn`: a car's own broadcast signals found from a drive with OBD-II polling, then read passively.

The simulator's seeded layouts are cars nobody published a DBC for (random IDs, start bits, lengths, byte
orders, signedness, scales in km/h or mph, plus counters, checksums, constants, noise, four wheel speeds, a
lagging tachometer and a nonlinear pedal). For each seed the learnt folder must decode speed and rpm exactly as
the true layout does on every frame, of the learning drive and of another, faster drive, and `stats` on a
passive log of that other drive must give the true distance within 0.5 %.
"""

from __future__ import annotations

import json
from pathlib import Path

import cantools
import numpy as np
import pytest

from firmware_bridge.cli import main
from firmware_bridge.constants import KM_PER_MILE
from firmware_bridge.learn.evidence import QuantitySamples
from firmware_bridge.sim import seeded_layout, write_log
from firmware_bridge.sim.cycles import Cycle, load_cycle
from firmware_bridge.sources.frame_blocks import read_blocks
from firmware_bridge.sources.logs import LogProblems
from firmware_bridge.vehicles import load_vehicle

from conftest import obd_drive, write_log as write_frames

REAL = Path(__file__).resolve().parents[2] / "shared" / "real"
ROW_KEYS = {"id", "start_bit", "length", "byte_order", "signed", "scale", "offset", "fit_rmse", "coverage",
            "confidence"}
_WLTC = load_cycle("wltc").speeds_kmh
#: A three-minute drive up to 90 km/h to learn from, and another up to 124 km/h (speeds the first never
#: reached, so top bits it never saw set must be right too) read passively.
LEARN_DRIVE = Cycle("wltc-1020-1200", _WLTC[1020:1201])
OTHER_DRIVE = Cycle("wltc-1480-1580", _WLTC[1480:1581])


def _learn(capsys, *args) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["learn", *map(str, args), "--format", "json"])
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if captured.out.strip() else {}), captured.err


def _decoded(db: cantools.database.Database, frame_id: int, log: Path, signal: str) -> np.ndarray:
    message = db.get_message_by_frame_id(frame_id)
    values = []
    for block in read_blocks([log], LogProblems()):
        for row in np.flatnonzero(block.frame_id == frame_id):
            values.append(message.decode(bytes(block.data[row, :block.length[row]]))[signal])
    return np.array(values, dtype=np.float64)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", range(20))
def test_a_seeded_car_is_learnt_exactly_and_read_passively(seed, tmp_path, capsys):
    layout = seeded_layout(seed)
    learn_log, other_log = tmp_path / "learn.log", tmp_path / "other.log"
    write_log(learn_log, LEARN_DRIVE, broadcast=layout.schedule())
    truth = write_log(other_log, OTHER_DRIVE, broadcast=layout.schedule(), obd_poll_hz=0)

    code, out, err = _learn(capsys, learn_log, "--name", f"seed{seed}", "--out", tmp_path)
    assert code == 0, err
    folder = tmp_path / f"seed{seed}"
    assert {Path(p).name for p in out["written"]} == {"profile.toml", f"seed{seed}.dbc", "signal_map.toml",
                                                     "REPORT.md"}
    learnt = cantools.database.load_file(str(folder / f"seed{seed}.dbc"))
    for quantity in ("speed_kmh", "engine_rpm"):
        row = out["quantities"][quantity]
        assert set(row) == ROW_KEYS
        message_name, signal = layout.targets[quantity]
        true_id = layout.database.get_message_by_name(message_name).frame_id
        assert row["id"] == true_id, f"{quantity}: learnt 0x{row['id']:X}, true 0x{true_id:X}"
        assert row["confidence"] >= 0.9
        unit = KM_PER_MILE if quantity == "speed_kmh" and layout.speed_in_mph else 1.0
        for log in (learn_log, other_log):
            expected = _decoded(layout.database, true_id, log, signal) * unit
            got = _decoded(learnt, true_id, log, quantity)
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12, err_msg=f"{quantity} in {log.name}")

    code = main(["stats", str(other_log), "--vehicle", str(folder), "--format", "json"])
    stats = json.loads(capsys.readouterr().out)
    assert code == 0
    assert stats["total"]["distance_km"] == pytest.approx(truth.distance_km, rel=0.005)


@pytest.mark.timeout(120)
def test_a_learnt_folder_is_a_car_folder(tmp_path, capsys):
    layout = seeded_layout(3)
    log = tmp_path / "drive.log"
    write_log(log, LEARN_DRIVE, broadcast=layout.schedule())
    code, out, err = _learn(capsys, log, "--name", "my-alto", "--out", tmp_path / "cars")
    assert code == 0, err
    folder = tmp_path / "cars" / "my-alto"
    profile = load_vehicle(str(folder))
    assert profile.name == "my-alto" and profile.dbc == (str(folder / "my-alto.dbc"),)
    db = cantools.database.load_file(str(folder / "my-alto.dbc"))
    routes = (folder / "signal_map.toml").read_text()
    for quantity, row in out["quantities"].items():
        message = db.get_message_by_frame_id(row["id"])
        signal = message.get_signal_by_name(quantity)
        assert (signal.start, signal.length, signal.byte_order, signal.is_signed, signal.scale, signal.offset) == (
            row["start_bit"], row["length"], row["byte_order"], row["signed"], row["scale"], row["offset"])
        assert f'{quantity} = ["{message.name}.{quantity}"]' in routes
    report = (folder / "REPORT.md").read_text()
    assert "speed_kmh" in report and "confidence" in report.lower()
    table = main(["learn", str(log), "--name", "my-alto", "--out", str(tmp_path / "cars")])
    assert table == 0 and "speed_kmh" in capsys.readouterr().out


@pytest.mark.timeout(180)
def test_inspect_shows_the_learnt_signals_as_candidates(tmp_path, capsys):
    layout = seeded_layout(3)
    log = tmp_path / "drive.log"
    write_log(log, LEARN_DRIVE, broadcast=layout.schedule())
    code, out, err = _learn(capsys, log, "--name", "my-alto", "--out", tmp_path)
    assert code == 0, err
    db = cantools.database.load_file(str(tmp_path / "my-alto" / "my-alto.dbc"))
    assert main(["inspect", str(log), "--vehicle", str(tmp_path / "my-alto"), "--format", "json"]) == 0
    candidates = json.loads(capsys.readouterr().out)["candidates"]
    for quantity in ("speed_kmh", "engine_rpm"):
        source = f"{db.get_message_by_frame_id(out['quantities'][quantity]['id']).name}.{quantity}"
        assert source in [c["source"] for c in candidates[quantity]]


@pytest.mark.timeout(60)
def test_too_little_evidence_is_said_and_nothing_written(tmp_path, capsys, trapezoid_drive):
    obd_only = tmp_path / "obd.log"
    write_frames(obd_only, obd_drive(trapezoid_drive[:120]))
    broadcast_only = tmp_path / "passive.log"
    write_log(broadcast_only, Cycle("short", _WLTC[1020:1060]), broadcast=seeded_layout(1).schedule(),
              obd_poll_hz=0)
    for log, why in ((obd_only, "no broadcast frames"), (broadcast_only, "no OBD-II answers")):
        code, out, err = _learn(capsys, log, "--name", "car", "--out", tmp_path / "cars")
        assert code == 0
        assert out == {"quantities": {}, "written": []}
        assert "nothing found" in err and why in err
    assert not (tmp_path / "cars").exists()


@pytest.mark.timeout(60)
def test_bad_input_exits_2(tmp_path, capsys):
    assert main(["learn", str(tmp_path / "missing.log"), "--name", "car", "--out", str(tmp_path)]) == 2
    assert "missing.log" in capsys.readouterr().err
    log = tmp_path / "x.log"
    log.write_text("(1.0) can0 123#00\n")
    assert main(["learn", str(log), "--name", "../car", "--out", str(tmp_path)]) == 2
    assert "--name" in capsys.readouterr().err


def test_samples_stay_bounded_and_spread_over_the_drive():
    samples = QuantitySamples(capacity=64)
    samples.widen(2)
    t = np.arange(10_000, dtype=np.float64)
    for chunk in np.array_split(np.arange(len(t)), 37):
        samples.add(t[chunk], t[chunk] * 2, np.zeros((len(chunk), 2, 3), dtype=np.uint64),
                    np.zeros((len(chunk), 2), dtype=np.float32))
    kept = samples.t[:samples.n]
    assert 32 <= samples.n <= 64
    assert kept[0] == 0 and kept[-1] > 9_000 and np.all(np.diff(kept) == samples.stride)
    np.testing.assert_array_equal(samples.y[:samples.n], kept * 2)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["kona2021_dcan_car_scanner_elm327.log", "kona2021_dcan_car_scanner_elm327_gvret.csv",
                                  "civic8th_vsslog.log", "civic8th_40mph.trc", "durango_tracncontrl.log"])
def test_real_logs_say_what_they_hold(name, tmp_path, capsys):
    log = REAL / name
    if not log.is_file():
        pytest.skip(f"{log} not present")
    code, out, err = _learn(capsys, log, "--name", "real", "--out", tmp_path)
    assert code == 0, err
    # The Kona: a phone app polling through an ELM327 (support bitmaps only, no speed or rpm answers, and an
    # ELM327 hears no broadcast frames). The others: broadcast frames, nobody polling.
    assert out == {"quantities": {}, "written": []}
    assert "nothing found, too little evidence: the logs hold no OBD-II answers for speed_kmh, engine_rpm" in err


@pytest.mark.timeout(60)
def test_a_transcript_that_is_no_can_log_is_bad_input(capsys, tmp_path):
    log = REAL / "jimny2008_kwp_car_scanner_elm327.txt"
    if not log.is_file():
        pytest.skip(f"{log} not present")
    assert main(["learn", str(log), "--name", "jimny", "--out", str(tmp_path)]) == 2
    assert "unknown log format" in capsys.readouterr().err
