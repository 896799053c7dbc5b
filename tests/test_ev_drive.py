"""Kei EV end to end: the i-MiEV-like simulator broadcasts on a virtual bus, the agent (i-MiEV profile, passive)
integrates pack power −V·I; trip energy, regeneration, Wh/km and SoC are held against the simulator's truth,
and the trip and vehicle points land in a real InfluxDB."""

import json
import shutil

import pytest

from firmware_bridge.pipeline import PipelineOptions
from firmware_bridge.sim import EvConfig, load_cycle
from firmware_bridge.sim.cycles import Cycle
from firmware_bridge.vehicles import bundled_folder

from conftest import obd_drive, run_cli, write_log
from livedrive import live_drive
from test_influx_v1 import agent_config, assert_db_matches_file

DB = "t_ev_drive"
#: WLTC's High phase alone (from the stop before it): urban, suburban and motorway speeds in 7.6 minutes.
HIGH_PHASE = Cycle("wltc-high", load_cycle("wltc-jp").speeds_kmh[1022:])


@pytest.fixture(scope="module")
def ev_drive(influx, tmp_path_factory):
    influx.create_database(DB)
    tmp = tmp_path_factory.mktemp("ev")
    config = agent_config(influx, DB, tmp)
    drive = live_drive(HIGH_PHASE, config=EvConfig(), poll=False, broadcast=True,
                       options=PipelineOptions(vehicle="mitsubishi-i-miev"), agent_config=config)
    drive.outputs.close(drain_stall_s=30)
    drive.lp_path = tmp / "points.lp"
    return drive


@pytest.fixture(scope="module")
def ev_trip(ev_drive):
    stats = ev_drive.pipeline.stats()
    assert len(stats["trips"]) == 1, stats["trips"]
    return stats["trips"][0]


def test_live_ev_energy_matches_truth(ev_drive, ev_trip):
    truth = ev_drive.truth
    assert ev_trip["fuel_source"] == "battery" and ev_trip["fuel_used_l"] is None
    assert ev_trip["energy_kwh"] == pytest.approx(truth.energy_kwh, rel=0.01)
    assert ev_trip["energy_regen_kwh"] == pytest.approx(truth.energy_regen_kwh, rel=0.02)
    assert ev_trip["distance_km"] == pytest.approx(truth.distance_km, rel=0.005)
    assert ev_trip["economy_wh_per_km"] == pytest.approx(truth.wh_per_km, rel=0.015)
    assert ev_trip["economy_km_per_kwh"] == pytest.approx(1000.0 / ev_trip["economy_wh_per_km"])
    assert ev_trip["soc_start_pct"] == pytest.approx(truth.soc_start_pct, abs=0.5)  # SoC comes in 0.5 % steps
    assert ev_trip["soc_end_pct"] == pytest.approx(truth.soc_end_pct, abs=0.5)
    domains = ev_trip["speed_domains"]
    assert sum(d["energy_kwh"] for d in domains.values()) == pytest.approx(ev_trip["energy_kwh"])
    for d in domains.values():
        assert d["economy_wh_per_km"] == pytest.approx(1000.0 * d["energy_kwh"] / d["distance_km"])
    # regeneration: the motorway domain (more speed to shed) costs more per km than the urban one
    assert domains["urban"]["economy_wh_per_km"] < domains["motorway"]["economy_wh_per_km"]
    assert ev_trip["catalog_pct"] is None  # the i-MiEV has no WLTC rating


def test_ev_points_land_in_influxdb(influx, ev_drive, ev_trip):
    assert ev_drive.outputs.sender.points_sent == ev_drive.outputs.spool_writer.points_committed
    assert_db_matches_file(influx, DB, ev_drive.lp_path)
    [stored] = influx.rows("SELECT * FROM trip", DB)
    for key in ("energy_kwh", "energy_regen_kwh", "economy_wh_per_km", "economy_km_per_kwh", "soc_start_pct",
                "soc_end_pct", "distance_km"):
        assert stored[key] == pytest.approx(ev_trip[key], rel=1e-12), key
    assert stored["fuel_source"] == "battery"
    urban = influx.rows("SELECT * FROM speed_domain WHERE domain = 'urban'", DB)[0]
    assert urban["energy_kwh"] == pytest.approx(ev_trip["speed_domains"]["urban"]["energy_kwh"], rel=1e-12)
    rows = influx.rows("SELECT battery_v, battery_a, battery_power_kw, soc_pct, motor_rpm, range_km FROM vehicle", DB)
    # one point per second the car spoke in
    assert len(rows) >= 0.97 * HIGH_PHASE.duration_s
    moving = [r for r in rows if r["motor_rpm"] and r["motor_rpm"] > 0]
    assert moving and all(250 < r["battery_v"] < 370 and 0 < r["soc_pct"] <= 100 for r in moving)
    assert all(r["battery_power_kw"] == pytest.approx(-r["battery_v"] * r["battery_a"] / 1000) for r in moving)
    assert min(r["battery_power_kw"] for r in moving) < 0 < max(r["battery_power_kw"] for r in moving)  # regen


def test_simulated_ev_log_replays_and_compares_with_a_catalog(tmp_path):
    log = tmp_path / "ev.log"
    result = run_cli("simulate", "--ev", "--cycle", "wltc-jp", "--out", log)
    assert result.returncode == 0, result.stderr
    truth_kwh = float(result.stderr.split("true pack energy ")[1].split(" kWh")[0])
    # a Sakura-like catalog on the i-MiEV's frames: Wh/km per domain against WLTC L/M/H, in a car folder of
    # one's own made from the i-MiEV's
    profile = tmp_path / "kei-ev"
    shutil.copytree(bundled_folder("mitsubishi-i-miev"), profile)
    (profile / "profile.toml").write_text('fuel = "electric"\ndbc = ["mitsubishi_i_miev.dbc"]\n[catalog]\n'
                                          'wltc_wh_per_km = 124\nwltc_low_wh_per_km = 100\n'
                                          'wltc_medium_wh_per_km = 113\nwltc_high_wh_per_km = 142\n')
    [trip] = json.loads(run_cli("stats", log, "--vehicle", profile, "--format", "json").stdout)["trips"]
    assert trip["energy_kwh"] == pytest.approx(truth_kwh, rel=0.01)
    assert trip["catalog_pct"] == pytest.approx(100 * 124 / trip["economy_wh_per_km"])
    for domain, catalog in (("urban", 100), ("suburban", 113), ("motorway", 142)):
        entry = trip["speed_domains"][domain]
        assert entry["catalog_pct"] == pytest.approx(100 * catalog / entry["economy_wh_per_km"]), domain


def test_petrol_trip_has_no_ev_figures(tmp_path, trapezoid_drive):
    write_log(tmp_path / "obd.log", obd_drive(trapezoid_drive))
    [trip] = json.loads(run_cli("stats", tmp_path / "obd.log", "--format", "json").stdout)["trips"]
    assert trip["fuel_source"] == "speed_density"
    for key in ("energy_kwh", "economy_wh_per_km", "economy_km_per_kwh", "energy_regen_kwh", "soc_start_pct",
                "soc_end_pct", "fuel_correction", "catalog_pct"):
        assert trip[key] is None, key
    assert all(d["energy_kwh"] is None and d["catalog_pct"] is None for d in trip["speed_domains"].values())


def test_demo_ev_drives_the_kei_ev():
    result = run_cli("demo", "--ev")
    assert result.returncode == 0, result.stderr
    assert "i-MiEV-like kei EV" in result.stderr and "polls" not in result.stderr
    measured = float(result.stdout.split("\nenergy ")[1].split(" kWh")[0])
    truth = float(result.stdout.split("ground truth: ")[1].split(" km, ")[1].split(" kWh")[0])
    assert measured == pytest.approx(truth, rel=0.02)
