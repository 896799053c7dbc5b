"""The dashboards checked as Grafana would check them, against a real InfluxDB filled by replaying drives:
every panel query (with the trip and period variables resolved as Grafana resolves them) returns data and names
only what the agent writes; the JSON passes @grafana/schema's TypeScript types (tsc); every unit id is one
@grafana/data formats; the calendar-period transformations run through @grafana/data's own transformers."""

import json
import re
import shutil
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from firmware_bridge.sim import EvConfig, write_log
from firmware_bridge.sim.gps import GpsRoute, write_nmea

from conftest import run_cli
from grafana_npm import grafana_packages, panel_types, run_check, tsc, typescript_of

VEHICLES = Path(__file__).resolve().parents[1] / "firmware_bridge" / "vehicles"
DASHBOARDS = sorted((Path(__file__).resolve().parents[1] / "dashboards" / "json").glob("*.json"))
TAG_KEYS = {"vehicle", "band", "domain", "kind", "message"}
PETROL, EV, TRUCK = "kei-1", "ev-1", "truck-1"
NICE_INTERVALS_MS = [10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 15_000, 20_000, 30_000, 60_000,
                     120_000, 300_000, 600_000, 900_000, 1_200_000, 1_800_000, 3_600_000]
DAY_S = 86400.0
TOKYO = ZoneInfo("Asia/Tokyo")
#: The period variable's moment.js formats (as Grafana formats times) in Python's strftime.
MOMENT_TO_STRFTIME = {"YYYY-MM": "%Y-%m", "YYYY-MM-DD": "%Y-%m-%d", "GGGG-[W]WW": "%G-W%V", "YYYY": "%Y"}


def load_dashboards() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in DASHBOARDS}


def _replay(logs, vehicle_id, profile, influx, db, config):
    target = ["--influx-url", influx.url, "--influx-api", "v1", "--influx-bucket", db, "--vehicle-id", vehicle_id,
              "--config", config]
    return target, run_cli("replay", *logs, "--vehicle", profile, *target)


@pytest.fixture(scope="module")
def filled(influx, tmp_path_factory):
    """A petrol WLTC drive (ECU with fuel rate, MAF and MAP; the simulator's broadcast frames too; a GPS
    receiver's NMEA log) with a gap and harsh events, fill-ups around it; next day a kei EV's drive, and the day
    after a GPS-only kei truck's: all replayed into one database."""
    tmp = tmp_path_factory.mktemp("dash")
    db = "dashboards"
    influx.create_database(db)
    log = tmp / "wltc.log"
    write_log(log, harsh_wltc(), pid_set="fuel_rate")
    lines = log.read_text().splitlines(keepends=True)
    t0 = float(lines[0][1:lines[0].index(")")])
    # 10 s without data in the middle of the drive: a gap event
    log.write_text("".join(l for l in lines if not 600 <= float(l[1:l.index(")")]) - t0 < 610))
    gps = tmp / "wltc.nmea"  # the receiver lost its fix in the same stretch (a tunnel)
    write_nmea(gps, harsh_wltc(), GpsRoute(outage=range(599, 611)), start_time=t0)
    config = tmp / "agent.toml"
    config.write_text(f'[spool]\npath = "{tmp / "spool.db"}"\nflush_s = 0.2\n[analytics]\nfuel_price_per_l = 172.0\n'
                      f'[calibration]\nledger = "{tmp / "ledger.db"}"\n')
    target = ["--influx-url", influx.url, "--influx-api", "v1", "--influx-bucket", db, "--vehicle-id", PETROL,
              "--config", config]
    # a full tank before the drive and after it: one fill-up interval, estimated vs pumped km/L
    fillup = run_cli("fillup", "--litres", "20", "--odometer", "12345", "--time", "2026-04-01T08:50:00", *target)
    assert fillup.returncode == 0, fillup.stderr
    _, result = _replay([log, gps], PETROL, "suzuki-alto", influx, db, config)  # a profile with a catalog figure
    assert result.returncode == 0, result.stderr
    fillup = run_cli("fillup", "--litres", "1.2", "--odometer", "12369", "--time", "2026-04-01T09:30:40", *target)
    assert fillup.returncode == 0, fillup.stderr
    ev_log = tmp / "ev.log"
    write_log(ev_log, "wltc-jp", EvConfig(), broadcast=True, start_time=t0 + DAY_S)
    # the simulated EV broadcasts the i-MiEV's frames; its owner's profile carries a WLTC rating (the Sakura's
    # figures here) so the catalog comparison has something to compare with
    car = shutil.copytree(VEHICLES / "mitsubishi-i-miev", tmp / "my-ev")
    with open(car / "profile.toml", "a", encoding="utf-8") as profile:
        profile.write("wltc_wh_per_km = 124\nwltc_low_wh_per_km = 100\nwltc_medium_wh_per_km = 113\n"
                      "wltc_high_wh_per_km = 142\n")  # appended to its [catalog] table
    _, result = _replay([ev_log], EV, car, influx, db, config)
    assert result.returncode == 0, result.stderr
    truck = tmp / "truck.nmea"
    write_nmea(truck, "wltc-jp", GpsRoute(lat=19.72, lon=-155.08), start_time=t0 + 2 * DAY_S)
    _, result = _replay([truck], TRUCK, "gps-only", influx, db, config)
    assert result.returncode == 0, result.stderr
    first = influx.rows('SELECT first("speed_kmh") FROM "vehicle"', db)[0]["time"]
    last = influx.rows('SELECT last("speed_kmh") FROM "vehicle"', db)[0]["time"]
    return db, first - 60_000, last + 60_000


def harsh_wltc():
    """WLTC 3b, then a hard launch (+3.3 m/s²) and a hard stop (−3.3 m/s²): harsh_accel and harsh_brake events."""
    from firmware_bridge.sim.cycles import Cycle, load_cycle

    wltc = load_cycle("wltc")
    return Cycle("wltc+harsh", wltc.speeds_kmh + (0.0, 12.0, 24.0, 36.0, 48.0, 48.0, 48.0, 36.0, 24.0, 12.0, 0.0, 0.0))


def grafana_interval(from_ms, to_ms, max_points=1000):
    """$__interval the way Grafana picks it: range ÷ data points, rounded to a nice interval."""
    raw = (to_ms - from_ms) / max_points
    ms = next((n for n in NICE_INTERVALS_MS if n >= raw), NICE_INTERVALS_MS[-1])
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def regex_values(values):
    """A multi-value/All variable inside /^...$/ as Grafana formats it for InfluxQL: (a|b), regex-escaped."""
    return "(" + "|".join(re.sub(r"([\\^$.|?*+()\[\]{}/-])", r"\\\1", v) for v in values) + ")"


def expand(query, from_ms, to_ms, variables):
    query = query.replace("$timeFilter", f"time >= {from_ms}ms and time <= {to_ms}ms")
    query = query.replace("$__interval", grafana_interval(from_ms, to_ms))
    for name, value in sorted(variables.items(), key=lambda kv: -len(kv[0])):
        query = query.replace(f"${name}", value)
    return query


def named_fields(query):
    """Fields a query reads: quoted identifiers that are not the measurement, a tag or an alias."""
    aliases = set(re.findall(r'\bAS\s+"(\w+)"', query, flags=re.I))
    measurements = set(re.findall(r'\bFROM\s+"(\w+)"', query, flags=re.I))
    quoted = set(re.findall(r'"(\w+)"', query))
    return measurements, quoted - aliases - measurements - TAG_KEYS


def all_queries(dashboard):
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            yield panel, target["query"]
    for annotation in dashboard["annotations"]["list"]:
        yield None, annotation["target"]["query"]


def variable_values(influx, db, dashboard, from_ms, to_ms):
    """Run the dashboard's query variables like Grafana does, and list every value each variable takes."""
    values = {}
    for variable in dashboard["templating"]["list"]:
        name = variable["name"]
        if variable["type"] == "custom":
            values[name] = [o["value"] for o in variable["options"]]
        elif variable["type"] == "textbox":
            values[name] = [variable["query"]]
        elif name == "vehicle":
            series = influx.query(variable["query"], db)
            vehicles = [v[1] for v in series[0]["values"]]
            assert sorted(vehicles) == sorted([PETROL, EV, TRUCK])
            values[name] = [regex_values(vehicles)]  # All
        elif name == "trip":
            query = expand(variable["query"], from_ms, to_ms, {"vehicle": values["vehicle"][0]})
            trips = [row["trip_id"] for row in influx.rows(query, db)]
            assert len(trips) == 3, "the trip picker lists one trip per drive"
            values[name] = trips
        else:
            raise AssertionError(f"variable {name} of an unknown kind")
    return values


def has_data(series):
    return any(v is not None for s in series for row in s["values"] for v in row[1:])


def combinations(variables):
    combos = [{}]
    for name, options in variables.items():
        combos = [{**c, name: o} for c in combos for o in options]
    return combos


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_panel_query_returns_agent_data(influx, filled, path):
    db, from_ms, to_ms = filled
    dashboard = json.loads(path.read_text())
    assert dashboard["panels"] and all(p["datasource"]["uid"] == "firmware-bridge-influx" for p in dashboard["panels"])
    measurements = {row[0] for row in influx.query("SHOW MEASUREMENTS", db)[0]["values"]}
    fields = {m: {row[0] for row in influx.query(f'SHOW FIELD KEYS FROM "{m}"', db)[0]["values"]} for m in measurements}
    variables = variable_values(influx, db, dashboard, from_ms, to_ms)
    trips = variables.pop("trip", [None])
    for panel, query in all_queries(dashboard):
        title = panel["title"] if panel else "annotation"
        for combo in combinations(variables):
            # a trip's panels: data for the trips that have the quantity (an EV's trip has no fuel)
            assert any([query_has_data(influx, db, fields, measurements, path.stem, title, panel,
                                       expand(query, from_ms, to_ms, {**combo, "trip": trip} if trip else combo))
                        for trip in trips]), f"{path.stem} / {title}: no data for {query} with {combo}"


def query_has_data(influx, db, fields, measurements, name, title, panel, q):
    """Run one expanded query: it names only what the agent writes; True if it returned data."""
    assert not re.search(r"\$\w", q), (title, q)  # every variable expanded
    named_measurements, named = named_fields(q)
    for m in named_measurements:
        assert m in measurements, f"{name} / {title}: measurement {m!r} is not written by the agent"
        missing = named - fields[m]
        assert not missing, f"{name} / {title}: {sorted(missing)} not fields of {m}"
    series = influx.query(q, db)
    if panel is None:  # the annotation's tags come from its kind column
        assert "kind" in series[0]["columns"]
        kinds = {row[series[0]["columns"].index("kind")] for s in series for row in s["values"]}
        assert {"harsh_accel", "harsh_brake", "gap"} <= kinds, kinds
    return has_data(series)


def test_trip_rows_link_to_the_trip_details(influx, filled):
    """Every data link names a dashboard that exists, variables it has, and fields its own query returns."""
    db, from_ms, to_ms = filled
    dashboards = load_dashboards()
    uids = {d["uid"]: d for d in dashboards.values()}
    links = 0
    for name, dashboard in dashboards.items():
        for panel in dashboard["panels"]:
            for override in panel["fieldConfig"]["overrides"]:
                for prop in override["properties"]:
                    if prop["id"] != "links":
                        continue
                    for link in prop["value"]:
                        links += 1
                        uid = re.match(r"/d/([\w-]+)/", link["url"]).group(1)
                        assert uid in uids, (name, link["url"])
                        target_vars = {v["name"] for v in uids[uid]["templating"]["list"]}
                        assert set(re.findall(r"var-(\w+)=", link["url"])) <= target_vars, link["url"]
                        query = expand(panel["targets"][0]["query"], from_ms, to_ms,
                                       {"vehicle": regex_values([PETROL, EV, TRUCK]), "unit": "km_per_l"})
                        series = influx.query(query, db)
                        columns = {*series[0]["columns"], *series[0].get("tags", {}), "Time"}
                        assert set(re.findall(r"__data\.fields\.(\w+)", link["url"])) <= columns, link["url"]
                        end_ms = series[0]["values"][0][series[0]["columns"].index("end_ms")]
                        assert end_ms > series[0]["values"][0][0]  # the trip's end after its start
    assert links >= 3  # trips, EV trips, map trips


def test_dashboards_are_generated_from_build_py(tmp_path):
    """The committed JSON is what dashboards/build.py produces (edit the code, not the JSON)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("build", Path(DASHBOARDS[0]).parents[1] / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    assert sorted(build.DASHBOARDS) == sorted(load_dashboards())
    for name, make in build.DASHBOARDS.items():
        committed = json.loads((Path(DASHBOARDS[0]).parent / f"{name}.json").read_text())
        assert committed == json.loads(json.dumps(make())), name


# -- Grafana's own packages -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def grafana():
    return grafana_packages()


def test_dashboards_pass_grafana_schema_types(grafana):
    dashboards = load_dashboards()
    modules = panel_types(grafana)
    result = tsc(grafana, typescript_of(dashboards, modules))
    assert result.returncode == 0, result.stdout[-4000:]
    # the check can fail: a misspelt option and an unknown enum value are both caught
    broken = json.loads(json.dumps(dashboards["drive"]))
    stat = next(p for p in broken["panels"] if p["type"] == "stat")
    stat["options"]["colorMode"] = "rainbow"
    broken["panels"][0]["options"]["legendd"] = {}
    result = tsc(grafana, typescript_of({"drive": broken}, modules))
    assert result.returncode != 0 and "rainbow" in result.stdout and "legendd" in result.stdout, result.stdout


def dashboard_units(dashboards):
    for dashboard in dashboards.values():
        for panel in dashboard["panels"]:
            if "unit" in panel["fieldConfig"]["defaults"]:
                yield panel["fieldConfig"]["defaults"]["unit"]
            for override in panel["fieldConfig"]["overrides"]:
                yield from (p["value"] for p in override["properties"] if p["id"] == "unit")


def test_every_unit_is_one_grafana_formats(grafana):
    units = sorted(set(dashboard_units(load_dashboards())))
    checked = run_check(grafana, {"units": units + ["flowlph"], "panels": []})["units"]
    assert not checked["flowlph"]["known"]  # the check tells an unknown id
    unknown = [u for u in units if not checked[u]["known"]]
    assert not unknown, unknown
    assert checked["litreh"]["text"] == "3.2 L/h"


def frames_of(series):
    """InfluxQL table results as the data frames Grafana's InfluxDB source makes: Time, columns, tags."""
    frames = []
    for s in series:
        columns = s["columns"]
        fields = [{"name": "Time", "type": "time", "values": [row[0] for row in s["values"]]}]
        for i, name in enumerate(columns[1:], 1):
            values = [row[i] for row in s["values"]]
            kind = "number" if all(v is None or isinstance(v, (int, float)) for v in values) else "string"
            fields.append({"name": name, "type": kind, "values": values})
        for tag, value in s.get("tags", {}).items():
            fields.append({"name": tag, "type": "string", "values": [value] * len(s["values"])})
        frames.append({"refId": "A", "fields": fields})
    return frames


def test_calendar_periods_through_grafana_transformers(influx, filled, grafana):
    """Trips grouped by calendar day/week/month/year in the browser's time zone by Grafana's own transformers,
    on the rows the panels' queries return: the three drives are a day apart each, in Tokyo too."""
    db, from_ms, to_ms = filled
    request = {"units": [], "panels": []}
    expected = {}
    for name, dashboard in load_dashboards().items():
        variables = variable_values(influx, db, dashboard, from_ms, to_ms)
        for panel in dashboard["panels"]:
            if not panel.get("transformations") or not any(t["id"] == "groupBy" for t in panel["transformations"]):
                continue
            for combo in combinations({k: v for k, v in variables.items() if k in ("unit", "period")}):
                combo = {"vehicle": variables["vehicle"][0], "unit": "km_per_l", **combo}
                series = influx.query(expand(panel["targets"][0]["query"], from_ms, to_ms, combo), db)
                key = f"{name}/{panel['title']}/{json.dumps(combo)}"
                request["panels"].append({"key": key, "transformations": panel["transformations"],
                                          "frames": frames_of(series), "variables": combo})
                expected[key] = combo, series, "economy_$unit" in json.dumps(panel["transformations"])
    assert len(expected) >= 4 * 3
    out = run_check(grafana, request, tz="Asia/Tokyo")["panels"]
    two_days = 0
    for key, (combo, series, in_unit) in expected.items():
        fields = {f["name"]: f["values"] for f in out[key][0]["fields"]}
        starts = [row[0] / 1000 for s in series for row in s["values"]]
        strftime = MOMENT_TO_STRFTIME[combo.get("period", "YYYY-MM")]
        periods = list(dict.fromkeys(datetime.fromtimestamp(t, TOKYO).strftime(strftime) for t in starts))
        assert fields["Time"] == periods, (key, fields["Time"])
        two_days += len(periods) >= 2
        numbers = [v for name, values in fields.items() if name != "Time" for v in values if v is not None]
        assert numbers and all(v >= 0 for v in numbers) and any(v > 0 for v in numbers), (key, fields)
        if in_unit:  # the economy in the unit picked, and only that
            assert list(fields) == ["Time", f"economy_{combo['unit']}"], key
    assert two_days  # the drives on two days in Tokyo are two rows per day
