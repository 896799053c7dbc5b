"""Vehicle profiles: the bundled models and their cited facts, user profiles, and catalog comparison."""

import json
import math
from pathlib import Path

import can
import pytest

from firmware_bridge.errors import InputError
from firmware_bridge.pipeline import Pipeline, PipelineOptions
from firmware_bridge.sources.gps import GPS_MESSAGE
from firmware_bridge.vehicles import available_vehicles, load_vehicle

from conftest import T0, obd_drive, run_cli, write_log

MODELS = {"suzuki-alto", "suzuki-alto-hybrid", "honda-n-box", "daihatsu-mira-es", "daihatsu-move", "nissan-dayz",
          "nissan-sakura", "mitsubishi-i-miev"}


def test_the_kei_models_are_bundled_with_sources():
    assert MODELS | {"generic-kei"} <= set(available_vehicles())
    for name in MODELS:
        profile = load_vehicle(name)
        assert profile.name == name and profile.sources, name


@pytest.mark.parametrize(("name", "engine", "displacement_l", "bore_mm", "stroke_mm", "wltc_km_per_l"), [
    ("suzuki-alto", "R06A", 0.658, 64.0, 68.2, 25.2),
    ("suzuki-alto-hybrid", "R06D", 0.6577, 61.5, 73.8, 27.7),
    ("honda-n-box", "S07B", 0.658, 60.0, 77.6, 21.2),
    ("daihatsu-mira-es", "KF", 0.658, 63.0, 70.4, None),
    ("daihatsu-move", "KF", 0.658, 63.0, 70.4, None),
    ("nissan-dayz", "BR06", 0.659, 62.7, 71.2, 23.3),
])
def test_petrol_profiles_match_reference(name, engine, displacement_l, bore_mm, stroke_mm, wltc_km_per_l):
    p = load_vehicle(name)
    assert (p.fuel, p.engine, p.displacement_l, p.bore_mm, p.stroke_mm) == ("gasoline", engine, displacement_l,
                                                                            bore_mm, stroke_mm)
    swept_l = 3 * math.pi / 4 * (bore_mm / 100) ** 2 * (stroke_mm / 100)  # inline-3
    assert swept_l == pytest.approx(displacement_l, rel=0.002)
    assert p.catalog.wltc_km_per_l == wltc_km_per_l
    assert p.tank_l is None and p.curb_mass_kg is None  # no source at hand: absent, not invented
    assert p.mild_hybrid == (engine == "R06D")


def test_ev_profiles_match_reference():
    sakura, imiev = load_vehicle("nissan-sakura"), load_vehicle("mitsubishi-i-miev")
    assert sakura.electric and sakura.battery_kwh == 20 and sakura.displacement_l is None
    c = sakura.catalog
    assert (c.wltc_wh_per_km, c.wltc_low_wh_per_km, c.wltc_medium_wh_per_km, c.wltc_high_wh_per_km,
            c.wltc_range_km) == (124, 100, 113, 142, 180)
    assert imiev.electric and (imiev.battery_kwh, imiev.battery_nominal_v) == (16, 330)
    assert imiev.catalog.jc08_wh_per_km == 110 and imiev.catalog.wltc_wh_per_km is None
    assert [Path(p).name for p in imiev.dbc] == ["mitsubishi_i_miev.dbc"] and Path(imiev.dbc[0]).is_file()


def test_unknown_vehicle_lists_the_available_ones(tmp_path):
    write_log(tmp_path / "a.log", obd_drive([0.0, 10.0, 0.0]))
    result = run_cli("stats", tmp_path / "a.log", "--vehicle", "suzuki-altoo")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "unknown vehicle 'suzuki-altoo'" in line and all(name in line for name in MODELS)


def test_user_profile_errors_name_the_key(tmp_path):
    bad = tmp_path / "mine.toml"
    bad.write_text('fuel = "gasoline"\ndisplacement_l = 0.658\n[catalog]\nwltc_kmpl = 20\n')
    with pytest.raises(InputError, match="catalog.wltc_kmpl"):
        load_vehicle(str(bad))
    bad.write_text('fuel = "diesel"\ndisplacement_l = 0.658\n')
    with pytest.raises(InputError, match="fuel: expected one of gasoline, electric"):
        load_vehicle(str(bad))
    bad.write_text('displacement_l = "660cc"\n')
    with pytest.raises(InputError, match="displacement_l: expected a number"):
        load_vehicle(str(bad))


def test_a_user_profile_brings_its_own_dbc(tmp_path):
    (tmp_path / "my_car.dbc").write_text('VERSION ""\nBS_:\nBU_: X\nBO_ 1281 MY_SPEED: 8 X\n'
                                         ' SG_ speed : 0|8@1+ (1,0) [0|255] "km/h" Vector__XXX\n')
    profile = tmp_path / "my-alto.toml"
    profile.write_text('fuel = "gasoline"\ndisplacement_l = 0.658\ndbc = ["my_car.dbc"]\n')
    pipeline = Pipeline(PipelineOptions(vehicle=str(profile)))
    assert pipeline.profile.name == "my-alto"
    assert 1281 in {m.frame_id for m in pipeline.decoder.db.messages}


def test_catalog_pct_per_domain_and_combined(tmp_path, trapezoid_drive):
    """km/L as a percentage of the catalog WLTC figure: combined, and per domain against L/M/H."""
    write_log(tmp_path / "drive.log", obd_drive(trapezoid_drive + [min(i, 100.0) for i in range(0, 101, 2)]
                                                + [100.0] * 60 + [max(100.0 - 2 * i, 0.0) for i in range(51)]))
    profile = tmp_path / "alto-catalog.toml"
    profile.write_text('fuel = "gasoline"\ndisplacement_l = 0.658\n[catalog]\nwltc_km_per_l = 25.0\n'
                       'wltc_low_km_per_l = 20.0\nwltc_medium_km_per_l = 25.0\nwltc_high_km_per_l = 30.0\n')
    [trip] = json.loads(run_cli("stats", tmp_path / "drive.log", "--vehicle", profile, "--format", "json").stdout)[
        "trips"]
    assert trip["catalog_pct"] == pytest.approx(100 * trip["economy_km_per_l"] / 25.0)
    for domain, catalog in (("urban", 20.0), ("suburban", 25.0), ("motorway", 30.0)):
        entry = trip["speed_domains"][domain]
        assert entry["economy_km_per_l"] > 0, domain
        assert entry["catalog_pct"] == pytest.approx(100 * entry["economy_km_per_l"] / catalog), domain
    plain = json.loads(run_cli("stats", tmp_path / "drive.log", "--vehicle", "suzuki-alto", "--format",
                               "json").stdout)["trips"][0]
    assert plain["catalog_pct"] == pytest.approx(100 * plain["economy_km_per_l"] / 25.2)
    assert all(d["catalog_pct"] is None for d in plain["speed_domains"].values())  # no L/M/H figures: null
    generic = json.loads(run_cli("stats", tmp_path / "drive.log", "--format", "json").stdout)["trips"][0]
    assert generic["catalog_pct"] is None


@pytest.mark.parametrize("name", available_vehicles())
def test_every_bundled_car_folder_loads_with_its_routes_checked(name):
    """A car folder's signal map may name only messages and signals its own databases have."""
    pipeline = Pipeline(PipelineOptions(vehicle=name))
    profile = pipeline.profile
    assert profile.folder and all(Path(p).is_file() for p in profile.dbc if not p.startswith("opendbc:"))
    if profile.signal_map:
        routed = {s.split(".")[0] for s in pipeline.state.wanted_signals()} - {GPS_MESSAGE}  # fixes, not frames
        assert routed <= {m.name for m in pipeline.decoder.db.messages}


def test_the_simulator_is_decoded_only_for_the_simulated_car():
    for name in available_vehicles():
        names = {m.name for m in Pipeline(PipelineOptions(vehicle=name)).decoder.db.messages}
        routes = Pipeline(PipelineOptions(vehicle=name)).state.wanted_signals()
        simulated = {n for n in [*names, *routes] if n.startswith("SIM_")}
        assert bool(simulated) == (name == "kei-sim"), name


def test_a_car_folder_anywhere(tmp_path):
    car = tmp_path / "my-hijet"
    car.mkdir()
    (car / "hijet.dbc").write_text('VERSION ""\nBS_:\nBU_: X\nBO_ 1281 HIJET_SPEED: 8 X\n'
                                   ' SG_ speed : 0|8@1+ (1,0) [0|255] "km/h" Vector__XXX\n')
    (car / "profile.toml").write_text('fuel = "gasoline"\ndisplacement_l = 0.658\ndbc = ["hijet.dbc"]\n')
    (car / "signal_map.toml").write_text('speed_kmh = ["HIJET_SPEED.speed"]\n')
    pipeline = Pipeline(PipelineOptions(vehicle=str(car)))
    assert pipeline.profile.name == "my-hijet"
    frames = [can.Message(timestamp=T0 + i, arbitration_id=1281, is_extended_id=False, data=[40] + [0] * 7)
              for i in range(3)]
    pipeline.feed_messages(frames)
    assert pipeline.state.values["speed_kmh"] == 40.0
    (car / "signal_map.toml").write_text('speed_kmh = ["HIJET_SPEED.sped"]\n')
    write_log(tmp_path / "a.log", frames)
    result = run_cli("stats", tmp_path / "a.log", "--vehicle", car)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "signal_map.toml" in line and "HIJET_SPEED has no signal 'sped'" in line
    (car / "signal_map.toml").write_text('speed_kmh = ["HIJET_SPEDE.speed"]\n')
    result = run_cli("stats", tmp_path / "a.log", "--vehicle", car)
    assert result.returncode == 2 and "no loaded database has a message 'HIJET_SPEDE'" in result.stderr
    (car / "profile.toml").unlink()
    result = run_cli("stats", tmp_path / "a.log", "--vehicle", car)
    assert result.returncode == 2 and "not a car folder" in result.stderr
