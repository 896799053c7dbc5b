"""Builds the Grafana dashboards as JSON (committed in dashboards/json/; run `python dashboards/build.py`).

Dashboards are code so a query, a unit or a layout changes in one place. Every query is InfluxQL (it runs on
InfluxDB 1.x, 2.x with a DBRP mapping, and 3.x) against the schema the agent writes (README, "Streaming to
InfluxDB"), through the provisioned datasource uid ``firmware-bridge-influx``. Economy per trip and live uses
the ``unit`` variable (field suffix km_per_l, l_per_100km, mpg_us); economy over many trips is always the ratio
of sums, Σ distance ÷ Σ fuel, in km/L — the unit Japanese catalogs quote — never an average of ratios.
"""

from __future__ import annotations

import json
from pathlib import Path

DATASOURCE = {"type": "influxdb", "uid": "firmware-bridge-influx"}
VEHICLE = '"vehicle" =~ /^$vehicle$/'
WHERE = f"WHERE {VEHICLE} AND $timeFilter"

VARIABLES = {
    "vehicle": {"type": "query", "name": "vehicle", "label": "Vehicle", "datasource": DATASOURCE,
                "query": 'SHOW TAG VALUES FROM "vehicle" WITH KEY = "vehicle"', "definition": "",
                "refresh": 1, "includeAll": True, "multi": True, "sort": 1,
                "current": {"text": "All", "value": "$__all"}},
    "unit": {"type": "custom", "name": "unit", "label": "Economy unit",
             "query": "km/L : km_per_l, L/100 km : l_per_100km, MPG (US) : mpg_us",
             "current": {"text": "km/L", "value": "km_per_l"},
             "options": [{"text": "km/L", "value": "km_per_l", "selected": True},
                         {"text": "L/100 km", "value": "l_per_100km", "selected": False},
                         {"text": "MPG (US)", "value": "mpg_us", "selected": False}]},
    "currency": {"type": "custom", "name": "currency", "label": "Currency", "query": "JPY,USD,EUR,GBP",
                 "current": {"text": "JPY", "value": "JPY"},
                 "options": [{"text": c, "value": c, "selected": c == "JPY"} for c in ("JPY", "USD", "EUR", "GBP")]},
    "trip": {"type": "query", "name": "trip", "label": "Trip", "datasource": DATASOURCE,
             "query": f'SELECT "trip_id" FROM "trip" {WHERE}', "definition": "", "refresh": 2, "sort": 2,
             "current": {}},
}


class Layout:
    """Places panels left to right, wrapping at Grafana's 24-column grid."""

    def __init__(self) -> None:
        self.x = self.y = self.row_h = 0
        self.panels: list[dict] = []

    def add(self, panel: dict, w: int = 12, h: int = 8) -> None:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        panel["id"] = len(self.panels) + 1
        self.x += w
        self.row_h = max(self.row_h, h)
        self.panels.append(panel)


def panel(kind: str, title: str, queries: list[str], unit: str | None = None, result: str = "time_series",
          description: str = "", **options) -> dict:
    targets = [{"refId": chr(ord("A") + i), "datasource": DATASOURCE, "rawQuery": True, "resultFormat": result,
                "query": q} for i, q in enumerate(queries)]
    defaults = {"unit": unit} if unit else {}
    return {"type": kind, "title": title, "description": description, "datasource": DATASOURCE,
            "targets": targets, "fieldConfig": {"defaults": defaults, "overrides": []}, "options": options}


def series(field: str, measurement: str = "vehicle", agg: str = "mean") -> str:
    return f'SELECT {agg}("{field}") AS "{field}" FROM "{measurement}" {WHERE} GROUP BY time($__interval), "vehicle" fill(null)'


def dashboard(uid: str, title: str, layout: Layout, variables: list[str], refresh: str = "", time_from: str = "now-7d",
              description: str = "") -> dict:
    return {"uid": uid, "title": title, "description": description, "tags": ["firmware_bridge", "kei"],
            "timezone": "browser", "schemaVersion": 39, "version": 1, "editable": True, "refresh": refresh,
            "time": {"from": time_from, "to": "now"}, "panels": layout.panels,
            "templating": {"list": [VARIABLES[v] for v in variables]},
            "annotations": {"list": [{"name": "Harsh events and gaps", "datasource": DATASOURCE, "enable": True,
                                      "iconColor": "orange",
                                      "query": f'SELECT "speed_kmh", "duration_s" FROM "event" {WHERE}',
                                      "tagsColumn": "kind"}]}}


def drive() -> dict:
    lay = Layout()
    lay.add(panel("timeseries", "Speed", [series("speed_kmh")], "velocitykmh"), 12)
    lay.add(panel("timeseries", "Engine speed", [series("engine_rpm")], "rotrpm"), 12)
    lay.add(panel("timeseries", "Fuel rate", [series("fuel_rate_lph")], "flowlph",
                  description="Best source the car offers: PID 0x5E, else MAF, else speed-density (MAP)."), 12)
    lay.add(panel("timeseries", "Instantaneous economy ($unit)", [series("economy_$unit")]), 12)
    lay.add(panel("stat", "Trip economy ($unit)",
                  [f'SELECT last("economy_$unit") FROM "trip" {WHERE} GROUP BY "vehicle"'], decimals=1), 6, 5)
    lay.add(panel("stat", "Fuel source in use", [f'SELECT last("fuel_source") FROM "vehicle" {WHERE} GROUP BY "vehicle"'],
                  result="table", textMode="value"), 6, 5)
    lay.add(panel("timeseries", "Coolant", [series("coolant_c")], "celsius"), 6, 5)
    lay.add(panel("timeseries", "Fuel level", [series("fuel_level_pct")], "percent"), 6, 5)
    lay.add(panel("timeseries", "Intake: MAP and MAF", [series("map_kpa"), series("maf_gps")]), 12)
    lay.add(panel("timeseries", "Throttle and load", [series("throttle_pct"), series("engine_load_pct")], "percent"), 12)
    return dashboard("fb-drive", "Kei drive (live)", lay, ["vehicle", "unit"], refresh="5s", time_from="now-1h",
                     description="The car now: speed, rpm, fuel and economy as the agent streams them.")


TRIP_COLUMNS = ('"trip_id", "duration_s" / 60 AS "duration_min", "distance_km", "fuel_used_l", '
                '"economy_$unit" AS "economy", "fuel_cost", "co2_kg", 100 * "idle_time_s" / "duration_s" AS "idle_pct", '
                '"max_speed_kmh", "fuel_source"')
THIS_TRIP = f"WHERE {VEHICLE} AND \"trip_id\" = '$trip' AND $timeFilter"


def trips() -> dict:
    lay = Layout()
    lay.add(panel("table", "Trips (economy in $unit, cost in $currency)",
                  [f'SELECT {TRIP_COLUMNS} FROM "trip" {WHERE} GROUP BY "vehicle"'], result="table",
                  description="One row per trip; the trip picker above selects the detail below."), 24, 10)
    for title, field, unit in (("Distance", "distance_km", "lengthkm"), ("Fuel", "fuel_used_l", "litre"),
                               ("Economy ($unit)", "economy_$unit", None), ("Duration", "duration_s", "s"),
                               ("CO₂", "co2_kg", "masskg"), ("Max speed", "max_speed_kmh", "velocitykmh")):
        lay.add(panel("stat", f"Trip {title.lower() if title[0] != 'E' else title}",
                      [f'SELECT last("{field}") FROM "trip" {THIS_TRIP}'], unit), 4, 4)
    lay.add(panel("barchart", "This trip: time per speed band",
                  [f'SELECT last("time_s") / 60 AS "minutes" FROM "speed_band" {THIS_TRIP} GROUP BY "band"'],
                  "m", result="table"), 12)
    lay.add(panel("barchart", "This trip: economy per speed domain ($unit)",
                  [f'SELECT last("economy_$unit") AS "economy" FROM "speed_domain" {THIS_TRIP} GROUP BY "domain"'],
                  result="table"), 12)
    return dashboard("fb-trips", "Kei trips", lay, ["vehicle", "unit", "currency", "trip"],
                     description="Every trip, and the one you pick in detail.")


def efficiency() -> dict:
    lay = Layout()
    lay.add(panel("bargauge", "km/L per speed domain (Σ distance ÷ Σ fuel)",
                  [f'SELECT sum("distance_km") / sum("fuel_l") AS "km_per_l" FROM "speed_domain" {WHERE} GROUP BY "domain"'],
                  result="table", description="Urban ≤ 60 km/h, suburban 60–90, motorway > 90 (EU RDE split; "
                  "compare with the catalog's WLTC-L/M/H)."), 12)
    lay.add(panel("barchart", "Time per speed band",
                  [f'SELECT sum("time_s") / 60 AS "minutes" FROM "speed_band" {WHERE} GROUP BY "band"'],
                  "m", result="table"), 12)
    lay.add(panel("barchart", "Distance per speed band",
                  [f'SELECT sum("distance_km") AS "km" FROM "speed_band" {WHERE} GROUP BY "band"'],
                  "lengthkm", result="table"), 12)
    lay.add(panel("barchart", "Fuel per speed band",
                  [f'SELECT sum("fuel_l") AS "litres" FROM "speed_band" {WHERE} GROUP BY "band"'],
                  "litre", result="table"), 12)
    lay.add(panel("timeseries", "Economy by month (km/L)",
                  [f'SELECT sum("distance_km") / sum("fuel_used_l") AS "km_per_l" FROM "trip" {WHERE} '
                   'GROUP BY time(30d), "vehicle" fill(none)'], drawStyle="bars"), 12)
    lay.add(panel("timeseries", "Economy against the catalog (% of the profile's WLTC figure)",
                  [f'SELECT "catalog_pct" FROM "trip" {WHERE}'], "percent", drawStyle="points",
                  description="Per trip: 100 % = the catalog's combined WLTC km/L; per-phase figures where the "
                  "vehicle profile has them are in the speed_domain points."), 12)
    lay.add(panel("timeseries", "Estimated vs pumped km/L (full-tank fill-ups)",
                  [f'SELECT "pumped_km_per_l" AS "pumped", "estimated_km_per_l" AS "estimated" FROM "calibration" {WHERE}'],
                  drawStyle="points", description="Between two full-tank fill-ups: the agent's estimate against the "
                  "pump; their ratio is the correction the agent applies (firmware-bridge calibration)."), 12)
    lay.add(panel("stat", "Idle fuel",
                  [f'SELECT sum("idle_fuel_l") AS "idle_l", 100 * sum("idle_fuel_l") / sum("fuel_used_l") AS "idle_share_pct" '
                   f'FROM "trip" {WHERE}'], result="table"), 6)
    lay.add(panel("stat", "Harsh events per 100 km",
                  [f'SELECT 100 * (sum("harsh_accel_events") + sum("harsh_brake_events")) / sum("distance_km") '
                   f'AS "per_100km" FROM "trip" {WHERE}'], decimals=2), 6)
    return dashboard("fb-efficiency", "Kei efficiency", lay, ["vehicle"], time_from="now-90d",
                     description="Where the fuel goes: speed domains against the catalog, speed bands, months, idling.")


def health() -> dict:
    lay = Layout()
    lay.add(panel("timeseries", "Frames per second", [series("frames_per_s", "agent")]), 8)
    lay.add(panel("timeseries", "Bus load", [series("bus_load_pct", "agent")], "percent"), 8)
    lay.add(panel("timeseries", "Decode errors (unknown + malformed, cumulative)",
                  [series("decode_errors", "agent", "max")]), 8)
    lay.add(panel("timeseries", "Spool backlog", [series("spool_points", "agent", "max"), series("spool_bytes", "agent", "max")]), 8)
    lay.add(panel("timeseries", "Write latency", [series("write_latency_ms", "agent", "max")], "ms"), 8)
    lay.add(panel("timeseries", "Dropped points (spool bound, queue overflow)",
                  [series("dropped_points", "agent", "max")]), 8)
    lay.add(panel("timeseries", "Agent memory", [series("rss_mb", "agent", "max")], "decmbytes"), 8)
    lay.add(panel("stat", "Gaps in the data", [f'SELECT sum("gaps") AS "gaps" FROM "trip" {WHERE}']), 8)
    lay.add(panel("table", "Fuel method per trip",
                  [f'SELECT "trip_id", "fuel_source", "distance_km" FROM "trip" {WHERE} GROUP BY "vehicle"'],
                  result="table"), 8)
    return dashboard("fb-health", "Kei data quality and agent health", lay, ["vehicle"], refresh="30s",
                     time_from="now-24h", description="Is the agent keeping up, is data waiting, is anything lost.")


DASHBOARDS = {"drive": drive, "trips": trips, "efficiency": efficiency, "health": health}


def main() -> None:
    out = Path(__file__).with_name("json")
    out.mkdir(exist_ok=True)
    for name, build in DASHBOARDS.items():
        (out / f"{name}.json").write_text(json.dumps(build(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
