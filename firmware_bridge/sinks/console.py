"""The live terminal view and the readable trip table."""

from __future__ import annotations

import sys
import time

from firmware_bridge.localtime import iso_local_text
from firmware_bridge.pipeline import Pipeline


def _fmt(value, spec: str, unit: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{unit}"


class LiveView:
    """One status line, redrawn in place on a terminal, printed every few seconds otherwise."""

    def __init__(self, pipeline: Pipeline, stream=None, min_wall_s: float = 0.25) -> None:
        self.pipeline, self.stream = pipeline, stream or sys.stdout
        self.tty = self.stream.isatty()
        self.min_wall_s = min_wall_s if self.tty else 5.0
        self._last_wall = 0.0
        #: Short notes shown after the figures, by topic (e.g. "dtc": the car's trouble codes).
        self.notes: dict[str, str] = {}

    def line(self) -> str:
        values = self.pipeline.state.values
        tracker = self.pipeline.tracker
        best = tracker.fuel_rate_lph()
        trip = tracker.trip
        speed = values.get("speed_kmh")
        rate = best[1] if best else None
        inst = speed / rate if speed is not None and rate else None
        parts = [f"{_fmt(speed, '5.1f')} km/h", f"{_fmt(values.get('engine_rpm'), '5.0f')} rpm",
                 f"{_fmt(rate, '5.2f')} L/h ({best[0] if best else 'no fuel source'})",
                 f"{_fmt(inst, '5.1f')} km/L"]
        if trip is not None:
            summary_fuel = trip.fuel.get(best[0]).total if best and best[0] in trip.fuel else None
            parts.append(f"trip {trip.distance_km:6.2f} km {_fmt(summary_fuel, '.3f')} L "
                         f"{_fmt(trip.distance_km / summary_fuel if summary_fuel else None, '.1f')} km/L")
        return " | ".join(parts + list(self.notes.values()))

    def update(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_wall < self.min_wall_s:
            return
        self._last_wall = now
        if self.tty:
            self.stream.write("\r\x1b[2K" + self.line())
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")


def _cell(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def trips_table(stats: dict) -> str:
    """The stats as a table a person reads: one row per trip, then the total and the frame counts."""
    header = (f"{'start (local time)':<25} {'dur min':>7} {'km':>8} {'L':>7} {'km/L':>6} {'L/100':>6} {'MPG':>6} "
              f"{'idle %':>6} {'max km/h':>8} {'stops':>5} {'source':<13}")
    rows = [header, "-" * len(header)]
    entries = [(iso_local_text(t["start"]), t) for t in stats["trips"]]
    if stats["total"] and len(stats["trips"]) > 1:
        entries.append(("total", stats["total"]))
    for label, t in entries:
        idle = 100 * t["idle_time_s"] / t["duration_s"] if t["duration_s"] else None
        rows.append(f"{label:<25} {t['duration_s'] / 60:7.1f} {t['distance_km']:8.2f} {_cell(t['fuel_used_l'], '7.3f')} "
                    f"{_cell(t['economy_km_per_l'], '6.1f')} {_cell(t['economy_l_per_100km'], '6.2f')} "
                    f"{_cell(t['economy_mpg_us'], '6.1f')} {_cell(idle, '6.1f')} {_cell(t['max_speed_kmh'], '8.1f')} "
                    f"{t['stops']:5.0f} {t['fuel_source'] or '—':<13}")
    total = stats["total"]
    if total:
        rows.append("")
        rows.append("speed domain   time min     km       L   km/L")
        for name, d in total["speed_domains"].items():
            rows.append(f"{name:<12} {d['time_s'] / 60:9.1f} {d['distance_km']:7.2f} {_cell(d['fuel_l'], '7.3f')} "
                        f"{_cell(d['economy_km_per_l'], '6.1f')}")
        rows.append("")
        rows.append(f"RPA {_cell(total['rpa_m_s2'], '.3f')} m/s²   v·a+ 95th {_cell(total['va_pos_95_m2_s3'], '.2f')} m²/s³   "
                    f"harsh accel {total['harsh_accel_events']:.0f}, brake {total['harsh_brake_events']:.0f}   "
                    f"CO2 {_cell(total['co2_kg'], '.2f')} kg   idle fuel {_cell(total['idle_fuel_l'], '.3f')} L   "
                    f"gaps {total['gaps']:.0f}")
        if total.get("energy_kwh") is not None:  # an EV: pack energy, DC
            rows.append(f"energy {total['energy_kwh']:.3f} kWh ({_cell(total['energy_regen_kwh'], '.3f')} kWh "
                        f"regenerated)   {_cell(total['economy_wh_per_km'], '.0f')} Wh/km   "
                        f"{_cell(total['economy_km_per_kwh'], '.2f')} km/kWh   "
                        f"SoC {_cell(total['soc_start_pct'], '.1f')} → {_cell(total['soc_end_pct'], '.1f')} %")
    f = stats["frames"]
    rows.append(f"frames: {f['total']} total, {f['decoded']} decoded, {f['unknown']} unknown, {f['malformed']} malformed")
    return "\n".join(rows)


