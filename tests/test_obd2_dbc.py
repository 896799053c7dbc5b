"""Tests for dbc/obd2.dbc (OBD-II mode 01 request/response layouts).

Expected values are computed here, independently of the DBC, from the
SAE J1979 mode 01 formulas (A, B, C, D = response bytes 3..6).
"""

from pathlib import Path

import cantools
import pytest

DBC_PATH = Path(__file__).resolve().parents[1] / "dbc" / "obd2.dbc"

RESPONSE_ID = 0x7E8
REQUEST_ID = 0x7DF
MODE01_RESPONSE = 0x41
HEADER_SIGNALS = {"length", "service", "pid"}


def _u16(a, b):
    return 256 * a + b


def _u32(a, b, c, d):
    return (a << 24) + (b << 16) + (c << 8) + d


def _bitmap(a, b, c, d):
    return _u32(a, b, c, d)


# pid -> (number of data bytes, {signal name: (formula(A, B, C, D), unit)})
PIDS = {
    0x00: (4, {"pids_supported_01_20": (_bitmap, "")}),
    0x03: (2, {"fuel_system_1_status": (lambda a, b, c, d: a, ""),
               "fuel_system_2_status": (lambda a, b, c, d: b, "")}),
    0x04: (1, {"calculated_load_pct": (lambda a, b, c, d: 100 * a / 255, "%")}),
    0x05: (1, {"coolant_temp_c": (lambda a, b, c, d: a - 40, "degC")}),
    0x06: (1, {"short_fuel_trim_b1_pct": (lambda a, b, c, d: (a - 128) * 100 / 128, "%")}),
    0x07: (1, {"long_fuel_trim_b1_pct": (lambda a, b, c, d: (a - 128) * 100 / 128, "%")}),
    0x0B: (1, {"intake_map_kpa": (lambda a, b, c, d: a, "kPa")}),
    0x0C: (2, {"engine_speed_rpm": (lambda a, b, c, d: _u16(a, b) / 4, "rpm")}),
    0x0D: (1, {"vehicle_speed_kmh": (lambda a, b, c, d: a, "km/h")}),
    0x0F: (1, {"intake_air_temp_c": (lambda a, b, c, d: a - 40, "degC")}),
    0x10: (2, {"maf_rate_gps": (lambda a, b, c, d: _u16(a, b) / 100, "g/s")}),
    0x11: (1, {"throttle_position_pct": (lambda a, b, c, d: 100 * a / 255, "%")}),
    0x1F: (2, {"run_time_s": (lambda a, b, c, d: _u16(a, b), "s")}),
    0x20: (4, {"pids_supported_21_40": (_bitmap, "")}),
    0x2F: (1, {"fuel_tank_level_pct": (lambda a, b, c, d: 100 * a / 255, "%")}),
    0x33: (1, {"barometric_pressure_kpa": (lambda a, b, c, d: a, "kPa")}),
    0x40: (4, {"pids_supported_41_60": (_bitmap, "")}),
    0x42: (2, {"control_module_voltage_v": (lambda a, b, c, d: _u16(a, b) / 1000, "V")}),
    0x44: (2, {"commanded_lambda": (lambda a, b, c, d: 2 * _u16(a, b) / 65536, "")}),
    0x46: (1, {"ambient_air_temp_c": (lambda a, b, c, d: a - 40, "degC")}),
    0x5C: (1, {"engine_oil_temp_c": (lambda a, b, c, d: a - 40, "degC")}),
    0x5E: (2, {"engine_fuel_rate_lph": (lambda a, b, c, d: _u16(a, b) / 20, "L/h")}),
    0x60: (4, {"pids_supported_61_80": (_bitmap, "")}),
    0x80: (4, {"pids_supported_81_a0": (_bitmap, "")}),
    0xA0: (4, {"pids_supported_a1_c0": (_bitmap, "")}),
    0xA6: (4, {"odometer_km": (lambda a, b, c, d: _u32(a, b, c, d) / 10, "km")}),
}

ALL_DATA_SIGNALS = {name for _, sigs in PIDS.values() for name in sigs}

# Raw data byte patterns (A, B, C, D): both extremes plus a few middles.
RAW_PATTERNS = [
    (0x00, 0x00, 0x00, 0x00),
    (0xFF, 0xFF, 0xFF, 0xFF),
    (0x01, 0x00, 0x00, 0x01),
    (0x80, 0x00, 0x00, 0x00),
    (0x7F, 0xFF, 0x7F, 0xFF),
    (0x1A, 0xF8, 0x12, 0x34),
    (0xBE, 0x1F, 0xA8, 0x13),
    (0x28, 0x64, 0xC8, 0xFE),
]


@pytest.fixture(scope="module")
def db():
    return cantools.database.load_file(str(DBC_PATH), strict=True)


def response_frame(pid, n_bytes, data, pad):
    """Hand-built single-frame mode 01 response, unused bytes padded."""
    frame = [2 + n_bytes, MODE01_RESPONSE, pid, *data[:n_bytes]]
    frame += [pad] * (8 - len(frame))
    return bytes(frame)


def test_dbc_loads_strict_and_has_messages(db):
    response = db.get_message_by_frame_id(RESPONSE_ID)
    request = db.get_message_by_frame_id(REQUEST_ID)
    assert response.name == "OBD2_RESPONSE"
    assert request.name == "OBD2_REQUEST"
    assert response.length == 8 and request.length == 8
    assert response.senders == ["ECM"]
    assert request.senders == ["TESTER"]
    assert {n.name for n in db.nodes} == {"ECM", "TESTER"}


def test_signal_set_matches_table(db):
    response = db.get_message_by_name("OBD2_RESPONSE")
    assert {s.name for s in response.signals} == ALL_DATA_SIGNALS | HEADER_SIGNALS


def test_multiplexing_structure(db):
    response = db.get_message_by_name("OBD2_RESPONSE")
    service = response.get_signal_by_name("service")
    pid = response.get_signal_by_name("pid")
    assert service.is_multiplexer and service.multiplexer_ids is None
    assert pid.is_multiplexer
    assert pid.multiplexer_signal == "service"
    assert pid.multiplexer_ids == [MODE01_RESPONSE]
    assert response.get_signal_by_name("length").multiplexer_signal is None
    for pid_value, (_, sigs) in PIDS.items():
        for name in sigs:
            sig = response.get_signal_by_name(name)
            assert sig.multiplexer_signal == "pid", name
            assert sig.multiplexer_ids == [pid_value], name
            assert sig.byte_order == "big_endian", name
            assert not sig.is_signed, name


def test_units(db):
    response = db.get_message_by_name("OBD2_RESPONSE")
    for _, sigs in PIDS.values():
        for name, (_, unit) in sigs.items():
            sig = response.get_signal_by_name(name)
            assert (sig.unit or "") == unit, name
            # every scaled physical quantity carries a unit
            if sig.scale != 1 or sig.offset != 0:
                if name != "commanded_lambda":  # dimensionless ratio
                    assert sig.unit, name


@pytest.mark.parametrize("pad", [0x55, 0xAA])
@pytest.mark.parametrize("pid", sorted(PIDS), ids=lambda p: f"pid_0x{p:02X}")
def test_decode_each_pid(db, pid, pad):
    n_bytes, sigs = PIDS[pid]
    for data in RAW_PATTERNS:
        frame = response_frame(pid, n_bytes, data, pad)
        decoded = db.decode_message(RESPONSE_ID, frame, decode_choices=False)
        # only this PID's signals plus the header
        assert set(decoded) == HEADER_SIGNALS | set(sigs), frame.hex()
        assert decoded["length"] == 2 + n_bytes
        assert decoded["service"] == MODE01_RESPONSE
        assert decoded["pid"] == pid
        # bytes beyond the PID's data length are padding, not data
        padded = list(data[:n_bytes]) + [pad] * (4 - n_bytes)
        for name, (formula, _) in sigs.items():
            expected = formula(*padded)
            assert decoded[name] == pytest.approx(expected, rel=1e-12, abs=1e-9), (
                name, frame.hex())


@pytest.mark.parametrize("pid", sorted(PIDS), ids=lambda p: f"pid_0x{p:02X}")
def test_min_max_match_formula_range(db, pid):
    response = db.get_message_by_name("OBD2_RESPONSE")
    _, sigs = PIDS[pid]
    for name, (formula, _) in sigs.items():
        sig = response.get_signal_by_name(name)
        if name.startswith("fuel_system"):
            lo, hi = 0, 255
        else:
            lo, hi = formula(0, 0, 0, 0), formula(0xFF, 0xFF, 0xFF, 0xFF)
        assert sig.minimum == pytest.approx(lo), name
        assert sig.maximum == pytest.approx(hi), name


def test_support_bitmap_is_raw_integer(db):
    for pid in (0x00, 0x20, 0x40, 0x60, 0x80, 0xA0):
        frame = bytes([6, 0x41, pid, 0xBE, 0x1F, 0xA8, 0x13, 0x55])
        decoded = db.decode_message(RESPONSE_ID, frame, decode_choices=False)
        (name,) = set(decoded) - HEADER_SIGNALS
        assert decoded[name] == 0xBE1FA813
        assert isinstance(decoded[name], int)


def test_fuel_system_status_two_bytes(db):
    frame = bytes([4, 0x41, 0x03, 0x02, 0x04, 0x55, 0x55, 0x55])
    raw = db.decode_message(RESPONSE_ID, frame, decode_choices=False)
    assert raw["fuel_system_1_status"] == 2
    assert raw["fuel_system_2_status"] == 4
    named = db.decode_message(RESPONSE_ID, frame)
    assert str(named["fuel_system_1_status"]) == "closed loop"
    assert str(named["fuel_system_2_status"]) == "open loop load or decel fuel cut"


def test_request_decode(db):
    frame = bytes.fromhex("02010D5555555555")
    decoded = db.decode_message(REQUEST_ID, frame)
    assert decoded == {"length": 2, "service": 1, "pid": 13}
    request = db.get_message_by_name("OBD2_REQUEST")
    assert not request.is_multiplexed()


@pytest.mark.parametrize(
    "pid, values",
    [
        (0x0C, {"engine_speed_rpm": 1726.0}),
        (0x05, {"coolant_temp_c": 90}),
        (0x06, {"short_fuel_trim_b1_pct": -3.125}),
        (0x03, {"fuel_system_1_status": 2, "fuel_system_2_status": 0}),
        (0x44, {"commanded_lambda": 1.0}),
        (0x42, {"control_module_voltage_v": 13.8}),
        (0xA6, {"odometer_km": 123456.7}),
        (0x00, {"pids_supported_01_20": 0xBE1FA813}),
    ],
    ids=lambda v: f"0x{v:02X}" if isinstance(v, int) else None,
)
def test_encode_decode_round_trip(db, pid, values):
    n_bytes = PIDS[pid][0]
    msg = {"length": 2 + n_bytes, "service": MODE01_RESPONSE, "pid": pid, **values}
    data = db.encode_message(RESPONSE_ID, msg, padding=True)
    assert len(data) == 8
    assert data[:3] == bytes([2 + n_bytes, MODE01_RESPONSE, pid])
    decoded = db.decode_message(RESPONSE_ID, data, decode_choices=False)
    assert set(decoded) == set(msg)
    for name, value in msg.items():
        assert decoded[name] == pytest.approx(value), name


def test_comments_present(db):
    response = db.get_message_by_name("OBD2_RESPONSE")
    request = db.get_message_by_name("OBD2_REQUEST")
    assert "0x7E9" in response.comment
    assert "0x7E0" in request.comment and "0x7E7" in request.comment
    assert response.get_signal_by_name("odometer_km").comment
    assert response.get_signal_by_name("fuel_system_1_status").comment
