"""Every query of every dashboard panel runs against a real InfluxDB filled by replaying a simulated drive:
each returns data, and every measurement and field it names is one the agent writes."""

import json
import re
from pathlib import Path

import pytest

from firmware_bridge.sim import write_log

from conftest import run_cli

DASHBOARDS = sorted((Path(__file__).resolve().parents[1] / "dashboards" / "json").glob("*.json"))
TAG_KEYS = {"vehicle", "band", "domain", "kind", "message"}
VEHICLE_ID = "kei-1"
NICE_INTERVALS_MS = [10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 15_000, 20_000, 30_000, 60_000,
                     120_000, 300_000, 600_000, 900_000, 1_200_000, 1_800_000, 3_600_000]


@pytest.fixture(scope="module")
def filled(influx, tmp_path_factory):
    """A WLTC drive (ECU with fuel rate, MAF and MAP; the simulator's broadcast frames too) replayed into a db."""
    tmp = tmp_path_factory.mktemp("dash")
    db = "dashboards"
    influx.create_database(db)
    log = tmp / "wltc.log"
    write_log(log, harsh_wltc(), pid_set="fuel_rate")
    lines = log.read_text().splitlines(keepends=True)
    t0 = float(lines[0][1:lines[0].index(")")])
    # 10 s without data in the middle of the drive: a gap event
    log.write_text("".join(l for l in lines if not 600 <= float(l[1:l.index(")")]) - t0 < 610))
    config = tmp / "agent.toml"
    config.write_text(f'[spool]\npath = "{tmp / "spool.db"}"\nflush_s = 0.2\n[analytics]\nfuel_price_per_l = 172.0\n'
                      f'[calibration]\nledger = "{tmp / "ledger.db"}"\n')
    target = ["--influx-url", influx.url, "--influx-api", "v1", "--influx-bucket", db, "--vehicle-id", VEHICLE_ID,
              "--config", config]
    # a full tank before the drive and after it: one fill-up interval, estimated vs pumped km/L
    fillup = run_cli("fillup", "--litres", "20", "--odometer", "12345", "--time", "2026-04-01T08:50:00", *target)
    assert fillup.returncode == 0, fillup.stderr
    result = run_cli("replay", log, "--vehicle", "suzuki-alto", *target)  # a profile with a catalog figure
    assert result.returncode == 0, result.stderr
    fillup = run_cli("fillup", "--litres", "1.2", "--odometer", "12369", "--time", "2026-04-01T09:30:40", *target)
    assert fillup.returncode == 0, fillup.stderr
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
            yield panel["title"], target["query"]
    for annotation in dashboard["annotations"]["list"]:
        yield "annotation " + annotation["name"], annotation["query"]


def variable_values(influx, db, dashboard, from_ms, to_ms):
    """Run the dashboard's query variables like Grafana does, and list every value each variable takes."""
    values = {"vehicle": [regex_values([VEHICLE_ID])], "currency": ["JPY"]}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "custom":
            values[variable["name"]] = [o["value"] for o in variable["options"]]
        elif variable["name"] == "vehicle":
            series = influx.query(variable["query"], db)
            assert [v[1] for v in series[0]["values"]] == [VEHICLE_ID]
        elif variable["name"] == "trip":
            query = expand(variable["query"], from_ms, to_ms, {"vehicle": values["vehicle"][0]})
            trips = [row["trip_id"] for row in influx.rows(query, db)]
            assert trips, "the trip picker lists no trip"
            values["trip"] = trips[:1]
    return values


def has_data(series):
    return any(v is not None for s in series for row in s["values"] for v in row[1:])


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_panel_query_returns_agent_data(influx, filled, path):
    db, from_ms, to_ms = filled
    dashboard = json.loads(path.read_text())
    assert dashboard["panels"] and all(p["datasource"]["uid"] == "firmware-bridge-influx" for p in dashboard["panels"])
    measurements = {row[0] for row in influx.query("SHOW MEASUREMENTS", db)[0]["values"]}
    fields = {m: {row[0] for row in influx.query(f'SHOW FIELD KEYS FROM "{m}"', db)[0]["values"]} for m in measurements}
    variables = variable_values(influx, db, dashboard, from_ms, to_ms)
    combos = [dict(zip(variables, combo)) for combo in _product(list(variables.values()))]
    for title, query in all_queries(dashboard):
        for combo in combos:
            q = expand(query, from_ms, to_ms, combo)
            assert not re.search(r"\$\w", q), (title, q)  # every variable expanded
            named_measurements, named = named_fields(q)
            for m in named_measurements:
                assert m in measurements, f"{path.stem} / {title}: measurement {m!r} is not written by the agent"
                missing = named - fields[m]
                assert not missing, f"{path.stem} / {title}: {sorted(missing)} not fields of {m}"
            if title.startswith("annotation"):
                influx.query(q, db)  # runs; harsh events and gaps need not happen on a WLTC drive
                continue
            assert has_data(influx.query(q, db)), f"{path.stem} / {title}: no data for {q}"


def _product(lists):
    if not lists:
        return [()]
    return [(head, *rest) for head in lists[0] for rest in _product(lists[1:])]


def test_dashboards_are_generated_from_build_py(tmp_path):
    """The committed JSON is what dashboards/build.py produces (edit the code, not the JSON)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("build", Path(DASHBOARDS[0]).parents[1] / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    for name, make in build.DASHBOARDS.items():
        committed = json.loads((Path(DASHBOARDS[0]).parent / f"{name}.json").read_text())
        assert committed == json.loads(json.dumps(make())), name
