"""Builds the Grafana dashboards as JSON (committed in dashboards/json/; run `python dashboards/build.py`).

Dashboards are code so a query, a unit or a layout changes in one place. Every query is InfluxQL (it runs on
InfluxDB 1.x, 2.x with a DBRP mapping, and 3.x) against the schema the agent writes (README, "Streaming to
InfluxDB"), through the provisioned datasource uid ``firmware-bridge-influx``. Economy per trip and live uses
the ``unit`` variable (field suffix km_per_l, l_per_100km, mpg_us); economy over many trips is always the ratio
of sums, Σ distance ÷ Σ fuel, never an average of ratios. InfluxQL groups time only in fixed steps from the
epoch, so calendar days, weeks, months and years are made in the browser by Grafana's own transformations
(format the trip's start in the browser's time zone, group the trips by it, sum, divide). Unit ids are
Grafana's (`litreh` is L/h); tests/test_dashboards.py checks every one with @grafana/data and every dashboard
against @grafana/schema's types.
"""

from __future__ import annotations

import json
from pathlib import Path

DATASOURCE = {"type": "influxdb", "uid": "firmware-bridge-influx"}
VEHICLE = '"vehicle" =~ /^$vehicle$/'
WHERE = f"WHERE {VEHICLE} AND $timeFilter"
THIS_TRIP = f"WHERE {VEHICLE} AND \"trip_id\" = '$trip' AND $timeFilter"
#: km/L -> US MPG (the same factor as firmware_bridge/constants.py: 3.785411784 L per US gal / 1.609344 km/mi).
KM_PER_L_TO_MPG_US = 2.352146


def _custom(name: str, label: str, choices: list[tuple[str, str]]) -> dict:
    """A custom variable whose first choice is the default."""
    return {"type": "custom", "name": name, "label": label,
            "query": ", ".join(f"{text} : {value}" for text, value in choices),
            "current": {"text": choices[0][0], "value": choices[0][1]},
            "options": [{"text": t, "value": v, "selected": i == 0} for i, (t, v) in enumerate(choices)]}


VARIABLES = {
    "vehicle": {"type": "query", "name": "vehicle", "label": "Vehicle", "datasource": DATASOURCE,
                "query": 'SHOW TAG VALUES FROM "vehicle" WITH KEY = "vehicle"',
                "refresh": 1, "includeAll": True, "multi": True, "sort": 1,
                "current": {"text": "All", "value": "$__all"}},
    "unit": _custom("unit", "Economy unit", [("km/L", "km_per_l"), ("L/100 km", "l_per_100km"), ("MPG (US)", "mpg_us")]),
    "currency": _custom("currency", "Currency", [(c, c) for c in ("JPY", "USD", "EUR", "GBP")]),
    "trip": {"type": "query", "name": "trip", "label": "Trip", "datasource": DATASOURCE,
             "query": f'SELECT "trip_id" FROM "trip" {WHERE}', "refresh": 2, "sort": 2,
             "current": {"text": "", "value": ""}},
    # moment.js formats of the calendar period a trip's start falls in (browser time zone; ISO weeks).
    "period": _custom("period", "Period", [("Month", "YYYY-MM"), ("Day", "YYYY-MM-DD"), ("Week", "GGGG-[W]WW"),
                                           ("Year", "YYYY")]),
    "tank_l": {"type": "textbox", "name": "tank_l", "label": "Tank (L)", "query": "27",
               "current": {"text": "27", "value": "27"}, "options": [{"text": "27", "value": "27", "selected": True}]},
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
          description: str = "", decimals: int | None = None, overrides: list[dict] | None = None,
          transformations: list[dict] | None = None, custom: dict | None = None, **options) -> dict:
    targets = [{"refId": chr(ord("A") + i), "datasource": DATASOURCE, "rawQuery": True, "resultFormat": result,
                "query": q} for i, q in enumerate(queries)]
    defaults: dict = {"unit": unit} if unit else {}
    if decimals is not None:
        defaults["decimals"] = decimals
    if custom:
        defaults["custom"] = custom
    built = {"type": kind, "title": title, "description": description, "datasource": DATASOURCE,
             "targets": targets, "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
             "options": options}
    if transformations:
        built["transformations"] = transformations
    return built


def stat(title: str, queries: list[str], unit: str | None = None, fields: str = "", **kw) -> dict:
    """A stat of each query's last value; ``fields`` (a regex) picks a string field, which stats skip otherwise."""
    return panel("stat", title, queries, unit, reduceOptions={"values": False, "calcs": ["lastNotNull"],
                                                              "fields": fields}, **kw)


def column(name: str, unit: str | None = None, decimals: int | None = None, title: str | None = None,
           links: list[dict] | None = None, hidden: bool | None = None) -> dict:
    """A table column's own unit, decimals, header and data links (a hidden column still feeds the links)."""
    props = [{"id": key, "value": value} for key, value in
             (("unit", unit), ("decimals", decimals), ("displayName", title), ("links", links), ("custom.hidden", hidden))
             if value is not None]
    return {"matcher": {"id": "byName", "options": name}, "properties": props}


def series(field: str, measurement: str = "vehicle", agg: str = "mean", where: str = WHERE) -> str:
    return (f'SELECT {agg}("{field}") AS "{field}" FROM "{measurement}" {where} GROUP BY time($__interval), '
            '"vehicle" fill(none)')


def dashboard(uid: str, title: str, layout: Layout, variables: list[str], refresh: str = "", time_from: str = "now-7d",
              description: str = "") -> dict:
    return {"uid": uid, "title": title, "description": description, "tags": ["firmware_bridge", "kei"],
            "timezone": "browser", "schemaVersion": 39, "version": 1, "editable": True, "refresh": refresh,
            "time": {"from": time_from, "to": "now"}, "panels": layout.panels,
            "links": [{"title": "Kei dashboards", "type": "dashboards", "tags": ["firmware_bridge"], "asDropdown": True,
                       "includeVars": True, "keepTime": True, "icon": "external link", "targetBlank": False,
                       "tooltip": "", "url": ""}],
            "templating": {"list": [VARIABLES[v] for v in variables]},
            "annotations": {"list": [ANNOTATION]}}


#: Harsh events and gaps on every time axis, tagged with their kind (a tag selected as a column).
ANNOTATION = {"name": "Harsh events and gaps", "datasource": DATASOURCE, "enable": True, "iconColor": "orange",
              "target": {"refId": "Anno", "fromAnnotations": True, "rawQuery": True, "resultFormat": "table",
                         "query": f'SELECT "speed_kmh", "accel_ms2", "duration_s", "kind" FROM "event" {WHERE}',
                         "tagsColumn": "kind", "textColumn": "speed_kmh"}}

# -- links between dashboards ----------------------------------------------------------------------------------
#: A trip row's link: the trip-details dashboard for that vehicle and trip, its time range the trip's.
TRIP_LINK = [{"title": "Trip details", "targetBlank": False,
              "url": "/d/fb-trip/kei-trip-details?var-vehicle=${__data.fields.vehicle}&var-trip=${__data.fields.trip_id}"
                     "&var-unit=${unit}&from=${__value.time}&to=${__data.fields.end_ms}"}]


def trip_table(title: str, select: str, extra_columns: list[dict], description: str) -> dict:
    """One row per trip, its id opening the trip's details (a trip's points carry its start and end)."""
    return panel("table", title, [f'SELECT "trip_id", "end_ms", {select} FROM "trip" {WHERE} GROUP BY "vehicle"'],
                 result="table", description=description,
                 overrides=[column("trip_id", title="Trip", links=TRIP_LINK), column("Time", title="Start"),
                            column("end_ms", hidden=True), *extra_columns],
                 showHeader=True, cellHeight="sm")


# -- calendar periods (transformations, browser time zone) -------------------------------------------------------
def by_period(sums: list[str], ratios: list[tuple[str, str, str, str]], period: str = "$period",
              counts: str | None = None) -> list[dict]:
    """Trips grouped by the calendar period their start falls in: sums of ``sums``, then ``ratios``
    (alias, numerator, operator, denominator-or-constant) from those sums; all in Grafana's transformations."""
    fields = {"Time": {"operation": "groupby", "aggregations": []}}
    fields.update({name: {"operation": "aggregate", "aggregations": ["sum"]} for name in sums})
    if counts:
        fields[counts] = {"operation": "aggregate", "aggregations": ["count"]}
    steps = [{"id": "formatTime", "options": {"timeField": "Time", "outputFormat": period, "timezone": "browser"}},
             {"id": "groupBy", "options": {"fields": fields}}]
    for alias, left, operator, right in ratios:
        def operand(name: str) -> dict:
            return {"fixed": name} if name[0].isdigit() else {"matcher": {"id": "byName", "options": name}}
        steps.append({"id": "calculateField", "options": {
            "mode": "binary", "alias": alias, "replaceFields": False,
            "binary": {"left": operand(left), "operator": operator, "right": operand(right)}}})
    return steps


#: Economy of summed distance and fuel in each unit the ``unit`` variable picks; the other two are dropped.
UNIT_RATIOS = [("economy_km_per_l", "distance_km (sum)", "/", "fuel_used_l (sum)"),
               ("litres_per_km", "fuel_used_l (sum)", "/", "distance_km (sum)"),
               ("economy_l_per_100km", "litres_per_km", "*", "100"),
               ("economy_mpg_us", "economy_km_per_l", "*", str(KM_PER_L_TO_MPG_US))]
KEEP_UNIT = {"id": "filterFieldsByName", "options": {"include": {"pattern": "^(Time|economy_$unit)$"}}}


# -- dashboards --------------------------------------------------------------------------------------------------
def drive() -> dict:
    lay = Layout()
    lay.add(panel("timeseries", "Speed (car, and GPS)", [series("speed_kmh"), series("gps_speed_kmh")], "velocitykmh",
                  description="The car's speed; GPS speed is used for trips only while the car gives none."), 12)
    lay.add(panel("timeseries", "Engine speed", [series("engine_rpm")], "rotrpm"), 12)
    lay.add(panel("timeseries", "Fuel rate", [series("fuel_rate_lph")], "litreh",
                  description="Best source the car offers: PID 0x5E, else MAF, else speed-density (MAP)."), 12)
    lay.add(panel("timeseries", "Instantaneous economy ($unit)", [series("economy_$unit")], decimals=1), 12)
    lay.add(stat("Trip economy ($unit)", [f'SELECT last("economy_$unit") FROM "trip" {WHERE} GROUP BY "vehicle"'],
                 decimals=1), 6, 5)
    lay.add(stat("Fuel source in use", [f'SELECT last("fuel_source") AS "fuel_source" FROM "vehicle" {WHERE} '
                                        'GROUP BY "vehicle"'], fields="/^fuel_source$/", result="table",
                 textMode="value", colorMode="none"), 6, 5)
    lay.add(panel("timeseries", "Coolant", [series("coolant_c")], "celsius"), 6, 5)
    lay.add(stat("Estimated range", [
        f'SELECT last("fuel_level_pct") / 100 * $tank_l * sum("speed_kmh") / sum("fuel_rate_lph") AS "range_km" '
        f'FROM "vehicle" {WHERE} GROUP BY "vehicle"'], "lengthkm", decimals=0,
        description="Fuel left (level × the tank variable) × the km/L driven over the time range (Σ speed ÷ Σ fuel "
                    "rate: idling included)."), 6, 5)
    lay.add(panel("timeseries", "Fuel level", [series("fuel_level_pct")], "percent"), 12)
    lay.add(panel("timeseries", "Intake: MAP and MAF", [series("map_kpa"), series("maf_gps")],
                  overrides=[column("map_kpa", "pressurekpa"), column("maf_gps", "massg", title="MAF (g/s)")]), 12)
    lay.add(panel("timeseries", "Throttle and load", [series("throttle_pct"), series("engine_load_pct")], "percent"), 12)
    lay.add(geomap("Where the car is", [f'SELECT last("lat") AS "lat", last("lon") AS "lon", last("speed_kmh") AS '
                                        f'"speed_kmh" FROM "vehicle" {WHERE} GROUP BY "vehicle"'],
                   [markers("Position", size=8)], "fit"), 12)
    return dashboard("fb-drive", "Kei drive (live)", lay, ["vehicle", "unit", "tank_l"], refresh="5s",
                     time_from="now-1h", description="The car now: speed, rpm, fuel and economy as the agent streams them.")


TRIP_NUMBERS = ('"duration_s" / 60 AS "duration_min", "distance_km", "fuel_used_l", "economy_$unit" AS "economy", '
                '"fuel_cost", "co2_kg", 100 * "idle_time_s" / "duration_s" AS "idle_pct", "max_speed_kmh", '
                '"fuel_source"')
TRIP_COLUMNS = [column("duration_min", "m", 0, "Duration"), column("distance_km", "lengthkm", 1, "Distance"),
                column("fuel_used_l", "litre", 2, "Fuel"), column("economy", None, 1, "Economy ($unit)"),
                column("fuel_cost", None, 0, "Cost ($currency)"), column("co2_kg", "masskg", 2, "CO₂"),
                column("idle_pct", "percent", 0, "Idle"), column("max_speed_kmh", "velocitykmh", 0, "Max speed"),
                column("fuel_source", title="Fuel source")]


def trips() -> dict:
    lay = Layout()
    lay.add(trip_table("Trips (economy in $unit, cost in $currency)", TRIP_NUMBERS, TRIP_COLUMNS,
                       "One row per trip: click a trip to open its details."), 24, 10)
    trip_numbers(lay, [("Trip distance", "distance_km", "lengthkm", 1), ("Trip fuel", "fuel_used_l", "litre", 2),
                       ("Trip economy ($unit)", "economy_$unit", None, 1), ("Trip duration", "duration_s", "s", 0),
                       ("Trip CO₂", "co2_kg", "masskg", 2), ("Trip max speed", "max_speed_kmh", "velocitykmh", 0)])
    bands_and_domains(lay)
    return dashboard("fb-trips", "Kei trips", lay, ["vehicle", "unit", "currency", "trip"],
                     description="Every trip; a trip's row opens its details.")


def trip_numbers(lay: Layout, rows: list[tuple[str, str, str | None, int]]) -> None:
    """Stats of the picked trip: (title, trip field, unit, decimals) each."""
    for title, field, unit, decimals in rows:
        lay.add(stat(title, [f'SELECT last("{field}") FROM "trip" {THIS_TRIP}'], unit, decimals=decimals), 4, 4)


def bands_and_domains(lay: Layout) -> None:
    """The picked trip's time per speed band and economy per speed domain."""
    lay.add(panel("barchart", "This trip: time per speed band",
                  [f'SELECT last("time_s") / 60 AS "minutes" FROM "speed_band" {THIS_TRIP} GROUP BY "band"'],
                  "m", result="table", decimals=1), 12)
    lay.add(panel("barchart", "This trip: economy per speed domain ($unit)",
                  [f'SELECT last("economy_$unit") AS "economy" FROM "speed_domain" {THIS_TRIP} GROUP BY "domain"'],
                  result="table", decimals=1), 12)


def trip_details() -> dict:
    lay = Layout()
    trip_numbers(lay, [("Distance", "distance_km", "lengthkm", 2), ("Fuel", "fuel_used_l", "litre", 2),
                       ("Economy ($unit)", "economy_$unit", None, 1), ("Duration", "duration_s", "s", 0),
                       ("Mean speed", "mean_speed_kmh", "velocitykmh", 0), ("Max speed", "max_speed_kmh", "velocitykmh", 0)])
    lay.add(panel("timeseries", "Speed", [series("speed_kmh")], "velocitykmh"), 12)
    lay.add(geomap("Route", [f'SELECT "lat", "lon", "speed_kmh" FROM "vehicle" {WHERE}'], [markers("Route", 3)]), 12)
    lay.add(panel("timeseries", "Fuel rate", [series("fuel_rate_lph")], "litreh"), 12)
    lay.add(panel("timeseries", "Engine speed", [series("engine_rpm")], "rotrpm"), 12)
    bands_and_domains(lay)
    return dashboard("fb-trip", "Kei trip details", lay, ["vehicle", "unit", "trip"], time_from="now-24h",
                     description="One trip: opened from a trip list (its time range is the trip's).")


def efficiency() -> dict:
    lay = Layout()
    lay.add(panel("bargauge", "km/L per speed domain (Σ distance ÷ Σ fuel)",
                  [f'SELECT sum("distance_km") / sum("fuel_l") AS "km_per_l" FROM "speed_domain" {WHERE} GROUP BY "domain"'],
                  result="table", decimals=1, description="Urban ≤ 60 km/h, suburban 60–90, motorway > 90 (EU RDE split; "
                  "compare with the catalog's WLTC-L/M/H)."), 12)
    lay.add(panel("barchart", "Time per speed band",
                  [f'SELECT sum("time_s") / 60 AS "minutes" FROM "speed_band" {WHERE} GROUP BY "band"'],
                  "m", result="table", decimals=0), 12)
    lay.add(panel("barchart", "Distance per speed band",
                  [f'SELECT sum("distance_km") AS "km" FROM "speed_band" {WHERE} GROUP BY "band"'],
                  "lengthkm", result="table", decimals=1), 12)
    lay.add(panel("barchart", "Fuel per speed band",
                  [f'SELECT sum("fuel_l") AS "litres" FROM "speed_band" {WHERE} GROUP BY "band"'],
                  "litre", result="table", decimals=2), 12)
    lay.add(panel("barchart", "Economy by month ($unit)",
                  [f'SELECT "distance_km", "fuel_used_l" FROM "trip" {WHERE} AND "fuel_used_l" > 0'],
                  result="table", decimals=1, transformations=[*by_period(["distance_km", "fuel_used_l"], UNIT_RATIOS,
                                                                          period="YYYY-MM"), KEEP_UNIT],
                  description="Calendar months in your time zone: Σ distance ÷ Σ fuel of the trips started in it."), 12)
    lay.add(panel("xychart", "Economy against outside temperature (km/L, per hour driven)",
                  [f'SELECT mean("ambient_c") AS "ambient_c", sum("speed_kmh") / sum("fuel_rate_lph") AS "km_per_l" '
                   f'FROM "vehicle" {WHERE} AND "speed_kmh" > 0 GROUP BY time(1h) fill(none)'], result="table",
                  decimals=1, description="Each dot an hour of driving: its mean ambient temperature (PID 0x46) and "
                  "its km/L (Σ speed ÷ Σ fuel rate). Cold engines and heaters cost fuel.",
                  mapping="auto", series=[]), 12)
    lay.add(panel("timeseries", "Economy against the catalog (% of the profile's WLTC figure)",
                  [f'SELECT "catalog_pct" FROM "trip" {WHERE}'], "percent", decimals=0, custom={"drawStyle": "points"},
                  description="Per trip: 100 % = the catalog's combined WLTC km/L; per-phase figures where the "
                  "vehicle profile has them are in the speed_domain points."), 12)
    lay.add(panel("timeseries", "Estimated vs pumped km/L (full-tank fill-ups)",
                  [f'SELECT "pumped_km_per_l" AS "pumped", "estimated_km_per_l" AS "estimated" FROM "calibration" {WHERE}'],
                  decimals=1, custom={"drawStyle": "points"},
                  description="Between two full-tank fill-ups: the agent's estimate against the pump; their ratio is "
                  "the correction the agent applies (firmware-bridge calibration). A GPS-only car has only the pump."), 12)
    lay.add(stat("Idle fuel",
                 [f'SELECT sum("idle_fuel_l") AS "idle_l", 100 * sum("idle_fuel_l") / sum("fuel_used_l") AS "idle_share_pct" '
                  f'FROM "trip" {WHERE}'], result="table", decimals=2,
                 overrides=[column("idle_l", "litre"), column("idle_share_pct", "percent", 0)]), 6)
    lay.add(stat("Harsh events per 100 km",
                 [f'SELECT 100 * (sum("harsh_accel_events") + sum("harsh_brake_events")) / sum("distance_km") '
                  f'AS "per_100km" FROM "trip" {WHERE}'], decimals=2), 6)
    return dashboard("fb-efficiency", "Kei efficiency", lay, ["vehicle", "unit"], time_from="now-90d",
                     description="Where the fuel goes: speed domains against the catalog, speed bands, months, idling.")


PERIOD_SUMS = ["distance_km", "fuel_used_l", "duration_s", "moving_time_s", "energy_kwh"]


def statistics() -> dict:
    lay = Layout()
    lay.add(panel("table", "Per $period", [f'SELECT "trip_id", {", ".join(f"{chr(34)}{f}{chr(34)}" for f in PERIOD_SUMS)} '
                                           f'FROM "trip" {WHERE}'],
                  result="table", description="Trips grouped by the calendar day, ISO week, month or year their start "
                  "falls in (your browser's time zone).",
                  transformations=[*by_period(PERIOD_SUMS, [UNIT_RATIOS[0], ("wh_per_km", "energy_kwh (sum)", "/",
                                                                             "distance_km (sum)")], counts="trip_id"),
                                   {"id": "calculateField", "options": {"mode": "binary", "alias": "hours_driven",
                                    "replaceFields": False, "binary": {"left": {"matcher": {"id": "byName",
                                    "options": "duration_s (sum)"}}, "operator": "/", "right": {"fixed": "3600"}}}}],
                  overrides=[column("Time", title="$period"), column("trip_id (count)", decimals=0, title="Trips"),
                             column("distance_km (sum)", "lengthkm", 1, "Distance"),
                             column("fuel_used_l (sum)", "litre", 1, "Fuel"),
                             column("duration_s (sum)", "s", 0, "Time"), column("moving_time_s (sum)", "s", 0, "Moving"),
                             column("energy_kwh (sum)", "kwatth", 1, "Energy"),
                             column("economy_km_per_l", None, 1, "km/L"), column("wh_per_km", None, 0, "Wh/km"),
                             column("hours_driven", "h", 1, "Hours")],
                  showHeader=True, cellHeight="sm"), 24, 9)
    lay.add(panel("barchart", "Distance per $period", [f'SELECT "distance_km", "fuel_used_l" FROM "trip" {WHERE}'],
                  "lengthkm", result="table", decimals=1,
                  transformations=[*by_period(["distance_km"], []), {"id": "filterFieldsByName", "options": {
                      "include": {"pattern": "^(Time|distance_km \\(sum\\))$"}}}]), 12)
    lay.add(panel("barchart", "Economy per $period ($unit)",
                  [f'SELECT "distance_km", "fuel_used_l" FROM "trip" {WHERE} AND "fuel_used_l" > 0'],
                  result="table", decimals=1, transformations=[*by_period(["distance_km", "fuel_used_l"], UNIT_RATIOS),
                                                               KEEP_UNIT]), 12)
    lay.add(panel("timeseries", "Odometer", [series("odometer_km", agg="max")], "lengthkm", decimals=0,
                  description="The car's odometer as it reports it (OBD-II PID 0xA6 or the car's own frame)."), 12)
    lay.add(panel("timeseries", "Fuel level", [series("fuel_level_pct")], "percent"), 12)
    return dashboard("fb-statistics", "Kei statistics", lay, ["vehicle", "unit", "period"], time_from="now-1y",
                     description="Distance, fuel, time and economy per day, week, month or year.")


def ev() -> dict:
    lay = Layout()
    lay.add(panel("timeseries", "State of charge", [series("soc_pct")], "percent", decimals=1), 12)
    lay.add(panel("timeseries", "Pack power (out of the pack; negative = regeneration)",
                  [series("battery_power_kw")], "kwatt", decimals=1), 12)
    lay.add(trip_table("Trips: energy", '"distance_km", "energy_kwh", "economy_wh_per_km", "economy_km_per_kwh", '
                       '"energy_regen_kwh", "catalog_pct", "soc_start_pct", "soc_end_pct"',
                       [column("distance_km", "lengthkm", 1, "Distance"), column("energy_kwh", "kwatth", 2, "Energy (net)"),
                        column("economy_wh_per_km", None, 0, "Wh/km"), column("economy_km_per_kwh", None, 2, "km/kWh"),
                        column("energy_regen_kwh", "kwatth", 2, "Regenerated"),
                        column("catalog_pct", "percent", 0, "vs catalog"), column("soc_start_pct", "percent", 0, "SoC start"),
                        column("soc_end_pct", "percent", 0, "SoC end")],
                       "DC at the pack; the catalog's Wh/km is AC from the socket, so expect ours better. "
                       "vs catalog: above 100 % = more km per kWh than the catalog."), 24, 8)
    lay.add(panel("barchart", "Wh/km per speed domain (against the catalog's WLTC-L/M/H)",
                  [f'SELECT 1000 * sum("energy_kwh") / sum("distance_km") AS "wh_per_km", '
                   f'sum("distance_km") / sum("energy_kwh") AS "km_per_kwh" FROM "speed_domain" {WHERE} '
                   'AND "energy_kwh" > 0 GROUP BY "domain"'], result="table", decimals=1,
                  overrides=[column("wh_per_km", title="Wh/km"), column("km_per_kwh", title="km/kWh")]), 12)
    lay.add(panel("bargauge", "Economy per speed domain against the catalog (%)",
                  [f'SELECT mean("catalog_pct") AS "catalog_pct" FROM "speed_domain" {WHERE} AND "energy_kwh" > 0 '
                   'GROUP BY "domain"'], "percent", result="table", decimals=0,
                  description="Per domain km/kWh as a share of the profile's WLTC phase figure (mean over trips)."), 12)
    lay.add(stat("Regeneration share", [
        f'SELECT 100 * sum("energy_regen_kwh") / (sum("energy_kwh") + sum("energy_regen_kwh")) AS "regen_pct" '
        f'FROM "trip" {WHERE}'], "percent", decimals=1,
        description="Energy braking put back into the pack, as a share of all the energy that left it."), 6)
    lay.add(stat("Wh/km over the range", [f'SELECT 1000 * sum("energy_kwh") / sum("distance_km") AS "wh_per_km" '
                                          f'FROM "trip" {WHERE} AND "energy_kwh" > 0'], decimals=0), 6)
    lay.add(panel("timeseries", "Estimated range (the car's)", [series("range_km")], "lengthkm", decimals=0), 12)
    return dashboard("fb-ev", "Kei EV", lay, ["vehicle"], time_from="now-30d",
                     description="Kei EVs: state of charge, pack power, Wh/km and km/kWh per trip and speed domain, "
                                 "regeneration, against the catalog.")


def markers(name: str, size: int = 4, field: str = "speed_kmh") -> dict:
    """A geomap markers layer located by the lat/lon fields, coloured by ``field``."""
    return {"type": "markers", "name": name, "config": {
        "showLegend": True, "style": {"size": {"fixed": size}, "color": {"field": field, "fixed": "dark-green"},
                                      "opacity": 0.8}},
        "location": {"mode": "coords", "latitude": "lat", "longitude": "lon"}, "tooltip": True}


def geomap(title: str, queries: list[str], layers: list[dict], view: str = "fit", **kw) -> dict:
    return panel("geomap", title, queries, result="table", basemap={"type": "default", "name": "Basemap"},
                 controls={"showZoom": True, "mouseWheelZoom": True, "showAttribution": True},
                 layers=layers, tooltip={"mode": "details"}, view={"id": view, "allLayers": True}, **kw)


def drive_map() -> dict:
    lay = Layout()
    lay.add(geomap("Drives", [f'SELECT mean("lat") AS "lat", mean("lon") AS "lon", mean("speed_kmh") AS "speed_kmh" '
                              f'FROM "vehicle" {WHERE} GROUP BY time($__interval), "vehicle" fill(none)'],
                   [markers("Drives", 3)], description="Every position the agent wrote, coloured by speed."), 16, 14)
    lay.add(geomap("Where trips ended", [
        f'SELECT "end_lat" AS "lat", "end_lon" AS "lon", "distance_km", "trip_id" FROM "trip" {WHERE} GROUP BY "vehicle"'],
        [markers("Trip ends", 9, "distance_km")], description="Places you drove to: each trip's last position."), 8, 14)
    lay.add(trip_table("Trips with positions", '"start_lat", "start_lon", "end_lat", "end_lon", "distance_km"',
                       [column(name, decimals=5) for name in ("start_lat", "start_lon", "end_lat", "end_lon")] +
                       [column("distance_km", "lengthkm", 1, "Distance")], "Start and end of each trip."), 24, 8)
    return dashboard("fb-map", "Kei map", lay, ["vehicle"], time_from="now-30d",
                     description="Drives and trip ends on a map (GPS: gpsd or an NMEA receiver).")


def health() -> dict:
    lay = Layout()
    lay.add(panel("timeseries", "Frames per second", [series("frames_per_s", "agent")]), 8)
    lay.add(panel("timeseries", "Bus load", [series("bus_load_pct", "agent")], "percent"), 8)
    lay.add(panel("timeseries", "Decode errors (unknown + malformed, cumulative)",
                  [series("decode_errors", "agent", "max")]), 8)
    lay.add(panel("timeseries", "Spool backlog", [series("spool_points", "agent", "max"), series("spool_bytes", "agent", "max")],
                  overrides=[column("spool_bytes", "bytes")]), 8)
    lay.add(panel("timeseries", "Write latency", [series("write_latency_ms", "agent", "max")], "ms"), 8)
    lay.add(panel("timeseries", "Dropped points (spool bound, queue overflow)",
                  [series("dropped_points", "agent", "max")]), 8)
    lay.add(panel("timeseries", "Agent memory", [series("rss_mb", "agent", "max")], "decmbytes"), 8)
    lay.add(stat("Gaps in the data", [f'SELECT sum("gaps") AS "gaps" FROM "trip" {WHERE}'], decimals=0), 8)
    lay.add(panel("table", "Fuel method per trip",
                  [f'SELECT "trip_id", "fuel_source", "distance_km" FROM "trip" {WHERE} GROUP BY "vehicle"'],
                  result="table", overrides=[column("distance_km", "lengthkm", 1)]), 8)
    return dashboard("fb-health", "Kei data quality and agent health", lay, ["vehicle"], refresh="30s",
                     time_from="now-24h", description="Is the agent keeping up, is data waiting, is anything lost.")


DASHBOARDS = {"drive": drive, "trips": trips, "trip": trip_details, "efficiency": efficiency,
              "statistics": statistics, "ev": ev, "map": drive_map, "health": health}


def main() -> None:
    out = Path(__file__).with_name("json")
    out.mkdir(exist_ok=True)
    for name, build in DASHBOARDS.items():
        (out / f"{name}.json").write_text(json.dumps(build(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
