"""The compiled decoders give cantools' values, bit for bit, on every message of our DBCs and of commaai/opendbc.

Random payloads for every message, plus payloads that select each multiplexer value (the OBD-II DBC nests service
then PID), go through cantools ``Message.decode(decode_choices=False)`` and the compiled layouts with numpy; values must be
identical in order, type and bits, and unknown multiplexer values unknown to both.
Messages the compiled decoders leave to cantools are listed with the reason, never skipped in silence.
"""

from __future__ import annotations

import random
import struct
from collections import Counter
from pathlib import Path

import cantools
import numpy as np
import pytest

from firmware_bridge.decode.compiled import compile_message
from firmware_bridge.decode.dbc import BUNDLED_DBCS, bundled_dbc_path
from firmware_bridge.vehicles import available_vehicles, load_vehicle
from firmware_bridge.decode.layout import Unsupported

RANDOM_PAYLOADS = 12
PAYLOADS_PER_MUX_VALUE = 2
MAX_MUX_VALUES = 24
#: Messages of opendbc 0.3.1 the compiled decoders hand to cantools, per file (checked to be exactly these; the
#: reasons are printed): signals overlapping, or out of order, in cantools' bit packing (cantools then reads
#: shifted fields, and only cantools reproduces that), and signals reaching past the frame length.
EXPECTED_OPENDBC_FALLBACKS = {
    "FORD_CADS_64.dbc": 1, "gm_global_a_lowspeed_1818125.dbc": 177, "gwm_haval_h6_phev_2024.dbc": 3,
    "hongqi_hs5.dbc": 1, "hyundai_i30_2014.dbc": 1, "mazda_3_2019.dbc": 1, "nissan_xterra_2011.dbc": 2,
    "toyota_new_mc_pt_generated.dbc": 1, "toyota_nodsu_pt_generated.dbc": 1, "toyota_secoc_pt_generated.dbc": 1,
    "toyota_tnga_k_pt_generated.dbc": 1, "volvo_v40_2017_pt.dbc": 1, "vw_mqb.dbc": 1, "vw_pq.dbc": 5,
}


def _opendbc_sources() -> list[tuple[str, str]]:
    """(name, DBC text) of every DBC opendbc ships, including those its generator builds at install time."""
    opendbc = pytest.importorskip("opendbc", reason="pip install -e '.[test]' installs opendbc")
    from opendbc.dbc.generator.generator import generate_all

    folder = Path(opendbc.__file__).parent / "dbc"
    sources = [(path.name, path.read_text(encoding="utf-8", errors="replace")) for path in sorted(folder.glob("*.dbc"))]
    sources += [(f"{name}.dbc", text) for name, text in sorted(generate_all().items())]
    return sources


def _load(text: str) -> cantools.database.Database:
    try:
        return cantools.database.load_string(text, "dbc")
    except Exception:  # noqa: BLE001 - cantools' strict checks (overlapping signals...) reject some files
        return cantools.database.load_string(text, "dbc", strict=False)


def _put_bits(data: bytearray, signal, raw: int) -> None:
    """Write a raw value one bit at a time by the DBC numbering (independent of the decoders' shift arithmetic)."""
    pos = signal.start
    for i in range(signal.length):
        bit = (raw >> (i if signal.byte_order == "little_endian" else signal.length - 1 - i)) & 1
        byte, offset = divmod(pos, 8)
        data[byte] = (data[byte] & ~(1 << offset)) | (bit << offset)
        if signal.byte_order == "little_endian":
            pos += 1
        else:
            pos = pos + 15 if pos % 8 == 0 else pos - 1


def _select(message, data: bytearray, mux_name: str, value: int) -> None:
    """Set a multiplexer, and the multiplexers above it so that it is the one decoded."""
    signal = message.get_signal_by_name(mux_name)
    _put_bits(data, signal, int(signal.conversion.numeric_scaled_to_raw(value)) & ((1 << signal.length) - 1))
    if signal.multiplexer_signal is not None:
        _select(message, data, signal.multiplexer_signal, signal.multiplexer_ids[0])


def _payloads(message, rng: random.Random) -> list[bytes]:
    def noise() -> bytearray:
        return bytearray(rng.getrandbits(8) for _ in range(message.length))

    payloads = [noise() for _ in range(RANDOM_PAYLOADS)]
    for mux in (s for s in message.signals if s.is_multiplexer):
        values = sorted({i for s in message.signals if s.multiplexer_signal == mux.name for i in s.multiplexer_ids or ()})
        for value in values[:MAX_MUX_VALUES]:
            for _ in range(PAYLOADS_PER_MUX_VALUE):
                data = noise()
                _select(message, data, mux.name, value)
                payloads.append(data)
    return [bytes(p) for p in payloads]


def _canonical(values: dict | None):
    """Order, type and exact bits of every value (floats by their IEEE bytes: NaN and -0.0 count)."""
    if values is None:
        return None
    return [(k, type(v).__name__, struct.pack(">d", v) if isinstance(v, float) else v) for k, v in values.items()]


def _reference(message, data: bytes):
    try:
        return message.decode(data, decode_choices=False)
    except cantools.database.DecodeError as exc:
        assert "multiplexer" in str(exc), exc
        return None


def _vectorised(layout, payloads: list[bytes], width: int) -> list[dict | None]:
    matrix = np.frombuffer(b"".join(p.ljust(width, b"\0") for p in payloads), dtype=np.uint8).reshape(-1, width)
    known, fragments = layout.decode_many(matrix)
    out: list[dict | None] = [{} if k else None for k in known.tolist()]
    for rows, names, columns in fragments:
        columns = [c.tolist() if isinstance(c, np.ndarray) else list(c) for c in columns]
        for row, values in zip(rows.tolist(), zip(*columns)):
            out[row].update(zip(names, values))
    return out


def check_database(db, label: str, rng: random.Random) -> tuple[int, list[str], list[str]]:
    """(messages checked, mismatches, fallbacks with reasons)."""
    checked, mismatches, fallbacks = 0, [], []
    for message in db.messages:
        try:
            layout = compile_message(message)
        except Unsupported as exc:
            fallbacks.append(f"{label} {message.name}: {exc}")
            continue
        payloads = _payloads(message, rng)
        batch = _vectorised(layout, payloads, max(8, message.length))
        for data, from_batch in zip(payloads, batch):
            expected = _canonical(_reference(message, data))
            if _canonical(from_batch) != expected:
                mismatches.append(f"{label} {message.name} {data.hex()}: {from_batch} != cantools")
        checked += 1
    return checked, mismatches, fallbacks


def test_bundled_dbcs_decode_identically():
    rng = random.Random(7)
    car_dbcs = [path for car in available_vehicles() for path in load_vehicle(car).dbc]
    assert any(path.endswith("kei_sim.dbc") for path in car_dbcs)
    for name in [*(str(bundled_dbc_path(name)) for name in BUNDLED_DBCS), *car_dbcs]:
        db = cantools.database.load_file(name)
        checked, mismatches, fallbacks = check_database(db, name, rng)
        assert checked == len(db.messages) and not fallbacks and not mismatches, (fallbacks, mismatches[:5])


def test_every_opendbc_message_decodes_identically():
    rng = random.Random(11)
    total, mismatches, fallbacks, unloadable = 0, [], [], []
    for name, text in _opendbc_sources():
        try:
            db = _load(text)
        except Exception as exc:  # noqa: BLE001 - reported, not hidden: cantools itself cannot read it
            unloadable.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}")
            continue
        checked, bad, fell_back = check_database(db, name, rng)
        total += checked
        mismatches += bad
        fallbacks += fell_back
    print(f"\n{total} opendbc messages decoded identically; cantools cannot load {len(unloadable)} files:",
          *unloadable, f"left to cantools at run time ({len(fallbacks)}):", *fallbacks, sep="\n  ")
    assert not mismatches, mismatches[:10]
    assert total > 3000
    per_file = Counter(f.split(" ")[0] for f in fallbacks)
    assert per_file == EXPECTED_OPENDBC_FALLBACKS, fallbacks
