"""Databases in every format cantools reads, by extension, for --dbc and profiles; opendbc by name; the
tolerant pass for files cantools' strict loader refuses, with a note of what was forgiven."""

from __future__ import annotations

import json
from pathlib import Path

import can
import cantools
import pytest

from conftest import T0, run_cli, write_log
from firmware_bridge.decode.dbc import Forgiven, load_database, tolerant_dbc
from firmware_bridge.errors import InputError

pytestmark = pytest.mark.timeout(300)

DBC = """VERSION ""
NS_ :
BS_:
BU_: ECU
BO_ 291 Speed: 8 ECU
 SG_ speed : 0|16@1+ (0.01,0) [0|655.35] "km/h" ECU
 SG_ rpm : 23|16@0+ (0.25,0) [0|16383.75] "rpm" ECU
BO_ 2147484163 Extended: 8 ECU
 SG_ level : 0|8@1+ (0.5,0) [0|127.5] "%" ECU
"""

FRAMES = [can.Message(timestamp=T0, arbitration_id=0x123, is_extended_id=False, data=bytes([0x10, 0x27, 0x1F, 0x40, 0, 0, 0, 0])),
          can.Message(timestamp=T0 + 1, arbitration_id=0x203, is_extended_id=True, data=bytes([100, 0, 0, 0, 0, 0, 0, 0]))]


def decoded(log, *dbc_args):
    result = run_cli("decode", log, *dbc_args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()], result.stderr


@pytest.mark.parametrize("suffix", [".kcd", ".sym", ".KCD"])
def test_every_cantools_format_by_extension(tmp_path, suffix):
    db = cantools.database.load_string(DBC, "dbc")
    (tmp_path / "car.dbc").write_text(DBC)
    other = tmp_path / f"car{suffix}"
    other.write_text(db.as_kcd_string() if suffix.lower() == ".kcd" else db.as_sym_string())
    log = tmp_path / "d.log"
    write_log(log, FRAMES)
    expected, _ = decoded(log, "--dbc", tmp_path / "car.dbc")
    got, stderr = decoded(log, "--dbc", other)
    assert [f["signals"] for f in got] == [f["signals"] for f in expected] == [
        {"speed": 100.0, "rpm": 2000.0}, {"level": 50.0}]
    assert "leniently" not in stderr


ARXML = """<?xml version="1.0" encoding="UTF-8"?>
<AUTOSAR xmlns="http://autosar.org/schema/r4.0">
<AR-PACKAGES><AR-PACKAGE><SHORT-NAME>Car</SHORT-NAME><ELEMENTS>
<CAN-CLUSTER><SHORT-NAME>Bus</SHORT-NAME><CAN-CLUSTER-VARIANTS><CAN-CLUSTER-CONDITIONAL>
 <PHYSICAL-CHANNELS><CAN-PHYSICAL-CHANNEL><SHORT-NAME>Channel</SHORT-NAME>
 <FRAME-TRIGGERINGS><CAN-FRAME-TRIGGERING><SHORT-NAME>SpeedTriggering</SHORT-NAME>
  <FRAME-REF DEST="CAN-FRAME">/Car/Speed</FRAME-REF>
  <CAN-ADDRESSING-MODE>STANDARD</CAN-ADDRESSING-MODE><IDENTIFIER>291</IDENTIFIER>
 </CAN-FRAME-TRIGGERING></FRAME-TRIGGERINGS>
 </CAN-PHYSICAL-CHANNEL></PHYSICAL-CHANNELS>
 <BAUDRATE>500000</BAUDRATE>
</CAN-CLUSTER-CONDITIONAL></CAN-CLUSTER-VARIANTS></CAN-CLUSTER>
<CAN-FRAME><SHORT-NAME>Speed</SHORT-NAME><FRAME-LENGTH>8</FRAME-LENGTH>
 <PDU-TO-FRAME-MAPPINGS><PDU-TO-FRAME-MAPPING><SHORT-NAME>SpeedMapping</SHORT-NAME>
  <PACKING-BYTE-ORDER>MOST-SIGNIFICANT-BYTE-LAST</PACKING-BYTE-ORDER>
  <PDU-REF DEST="I-SIGNAL-I-PDU">/Car/SpeedPdu</PDU-REF><START-POSITION>0</START-POSITION>
 </PDU-TO-FRAME-MAPPING></PDU-TO-FRAME-MAPPINGS>
</CAN-FRAME>
<I-SIGNAL-I-PDU><SHORT-NAME>SpeedPdu</SHORT-NAME><LENGTH>8</LENGTH>
 <I-SIGNAL-TO-PDU-MAPPINGS><I-SIGNAL-TO-I-PDU-MAPPING><SHORT-NAME>speed</SHORT-NAME>
  <I-SIGNAL-REF DEST="I-SIGNAL">/Car/speed</I-SIGNAL-REF>
  <PACKING-BYTE-ORDER>MOST-SIGNIFICANT-BYTE-LAST</PACKING-BYTE-ORDER><START-POSITION>0</START-POSITION>
 </I-SIGNAL-TO-I-PDU-MAPPING></I-SIGNAL-TO-PDU-MAPPINGS>
</I-SIGNAL-I-PDU>
<I-SIGNAL><SHORT-NAME>speed</SHORT-NAME><LENGTH>16</LENGTH>
 <PHYSICAL-PROPS><SW-DATA-DEF-PROPS-VARIANTS><SW-DATA-DEF-PROPS-CONDITIONAL>
  <COMPU-METHOD-REF DEST="COMPU-METHOD">/Car/SpeedScale</COMPU-METHOD-REF>
 </SW-DATA-DEF-PROPS-CONDITIONAL></SW-DATA-DEF-PROPS-VARIANTS></PHYSICAL-PROPS>
</I-SIGNAL>
<COMPU-METHOD><SHORT-NAME>SpeedScale</SHORT-NAME><CATEGORY>LINEAR</CATEGORY>
 <COMPU-INTERNAL-TO-PHYS><COMPU-SCALES><COMPU-SCALE><COMPU-RATIONAL-COEFFS>
  <COMPU-NUMERATOR><V>0</V><V>0.01</V></COMPU-NUMERATOR><COMPU-DENOMINATOR><V>1</V></COMPU-DENOMINATOR>
 </COMPU-RATIONAL-COEFFS></COMPU-SCALE></COMPU-SCALES></COMPU-INTERNAL-TO-PHYS>
</COMPU-METHOD>
</ELEMENTS></AR-PACKAGE></AR-PACKAGES>
</AUTOSAR>
"""


def test_arxml_by_extension(tmp_path):
    arxml = tmp_path / "car.arxml"
    arxml.write_text(ARXML)
    reference = cantools.database.load_file(str(arxml))
    assert [m.name for m in reference.messages] == ["Speed"]
    log = tmp_path / "d.log"
    write_log(log, FRAMES[:1])
    got, _ = decoded(log, "--dbc", arxml)
    assert got == [{"t": T0, "id": 0x123, "message": "Speed",
                    "signals": reference.messages[0].decode(FRAMES[0].data, decode_choices=False)}]
    assert got[0]["signals"] == {"speed": 10000}


def test_profile_lists_a_kcd_file(tmp_path):
    db = cantools.database.load_string(DBC, "dbc")
    car = tmp_path / "my-car"
    car.mkdir()
    (car / "car.kcd").write_text(db.as_kcd_string())
    (car / "profile.toml").write_text('name = "my-car"\nfuel = "gasoline"\ndisplacement_l = 0.66\ndbc = ["car.kcd"]\n')
    log = tmp_path / "d.log"
    write_log(log, FRAMES)
    result = run_cli("decode", log, "--vehicle", car)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["message"] for line in result.stdout.splitlines()] == ["Speed", "Extended"]


def test_an_opendbc_style_file_loads_leniently_with_a_note(tmp_path):
    text = DBC + """BO_ 1875 LongId: 8 ECU
 SG_ torque : 0|13@1+ (.25,-500) [-500|1547.5] "Nm" ECU
 SG_ 0_COUNTER : 60|4@1+ (1,0) [0|15] "" ECU
CM_ SG_ 1875 "a comment cantools cannot read";
VAL_ 291 no_such_signal 0 "off" 1 "on" ;
VAL_ 1875 0_COUNTER 0 "zero"
"""
    path = tmp_path / "opendbc_style.dbc"
    path.write_text(text.replace("1875", "74565"))  # 0x12345: more than 11 bits, no extended mark
    log = tmp_path / "d.log"
    write_log(log, [can.Message(timestamp=T0, arbitration_id=0x12345, is_extended_id=True,
                                data=bytes([0xD0, 0x07, 0, 0, 0, 0, 0, 0x30]))])
    got, stderr = decoded(log, "--dbc", path)
    assert got[0]["message"] == "LongId" and got[0]["signals"] == {"torque": 0.0, "_0_COUNTER": 3}
    [note] = [line for line in stderr.splitlines() if "leniently" in line]
    for forgiven in ("1 frame IDs above 0x7FF read as 29-bit", "1 malformed comments dropped",
                     "1 numbers written without their leading 0", "names starting with a digit",
                     "1 unused value tables ignored", "1 value tables without their closing ';'"):
        assert forgiven in note, note


def test_a_broken_database_is_still_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.dbc"
    bad.write_text('VERSION ""\nBO_ 100 Broken: 8 ECU\n SG_ speed : 0|8@1+ (1,0) [0|255] "" ECU\nnonsense here\n')
    with pytest.raises(InputError, match="bad.dbc: not a valid DBC file"):
        load_database([bad])
    with pytest.raises(InputError, match="unknown database format '.txt'"):
        (tmp_path / "x.txt").write_text("x")
        load_database([tmp_path / "x.txt"])


def test_opendbc_names_and_a_close_match(tmp_path):
    pytest.importorskip("opendbc")
    with pytest.raises(InputError, match="did you mean .*toyota_iQ_2009_can"):
        load_database(["opendbc:toyota_iQ_2009_cann"])
    real = cantools.database.load_file(str(Path(__import__("opendbc").__file__).parent / "dbc" / "toyota_iQ_2009_can.dbc"))
    db = load_database(["opendbc:toyota_iQ_2009_can.dbc"], bundled=False)
    assert [m.name for m in db.messages] == [m.name for m in real.messages]


def test_tolerant_pass_leaves_a_good_file_alone():
    forgiven = Forgiven()
    assert tolerant_dbc(DBC, forgiven) == DBC and forgiven.notes == []
