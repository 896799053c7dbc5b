"""A self-contained trip report: one HTML file (inline SVG plots, no scripts, no server) and a PNG to share.

Plots: speed and fuel rate over time; km/L per speed domain against the vehicle's catalog WLTC phase figures
when its profile has them; time and fuel per speed band. Below them, the trip table.
"""

from __future__ import annotations

import html
import io
import math
from dataclasses import dataclass, field

from firmware_bridge.analytics.settings import SPEED_BANDS, SPEED_DOMAINS
from firmware_bridge.errors import InputError
from firmware_bridge.localtime import iso_local_text, local
from firmware_bridge.records import Point

@dataclass
class DriveSeries:
    """The 1 Hz ``vehicle`` points of a drive, kept for plotting (a long drive is a few thousand rows)."""

    t: list[float] = field(default_factory=list)
    speed_kmh: list[float | None] = field(default_factory=list)
    fuel_rate_lph: list[float | None] = field(default_factory=list)
    lat: list[float | None] = field(default_factory=list)  # GPS positions, where there was a fix
    lon: list[float | None] = field(default_factory=list)

    def add(self, point: Point) -> None:
        if point.measurement != "vehicle":
            return
        self.t.append(point.t)
        self.speed_kmh.append(point.fields.get("speed_kmh"))
        self.fuel_rate_lph.append(point.fields.get("fuel_rate_lph"))
        self.lat.append(point.fields.get("lat"))
        self.lon.append(point.fields.get("lon"))

    @property
    def has_track(self) -> bool:
        return any(lat is not None for lat in self.lat)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("the report needs matplotlib: pip install 'firmware-bridge[report]'") from None
    return plt


def _catalog(profile) -> dict[str, float]:
    """The profile's catalog km/L per speed domain, where it quotes the matching WLTC phase."""
    return {d: km_per_l for d in SPEED_DOMAINS if (km_per_l := profile.catalog.km_per_l(d))}


def _plot_time(ax, series: DriveSeries) -> None:
    times = [local(t) for t in series.t]
    ax.plot(times, series.speed_kmh, color="#1f77b4", linewidth=0.8)
    ax.set_ylabel("speed (km/h)", color="#1f77b4")
    fuel = ax.twinx()
    fuel.plot(times, series.fuel_rate_lph, color="#d62728", linewidth=0.6, alpha=0.8)
    fuel.set_ylabel("fuel rate (L/h)", color="#d62728")
    ax.set_title(f"Speed and fuel rate (local time, UTC{times[0].strftime('%z') if times else ''})")
    ax.grid(alpha=0.3)


def _plot_domains(ax, total: dict, catalog: dict[str, float]) -> None:
    domains = total["speed_domains"]
    values = [domains[d]["economy_km_per_l"] or 0.0 for d in SPEED_DOMAINS]
    bars = ax.bar(SPEED_DOMAINS, values, color=["#2ca02c", "#ff7f0e", "#9467bd"], label="this drive")
    ax.bar_label(bars, fmt="%.1f")
    if catalog:
        xs = [i for i, d in enumerate(SPEED_DOMAINS) if d in catalog]
        ax.scatter(xs, [catalog[SPEED_DOMAINS[i]] for i in xs], marker="_", s=900, color="black", zorder=3,
                   label="catalog WLTC L/M/H")
        ax.legend(loc="lower right")
    ax.set_ylabel("km/L")
    ax.margins(y=0.15)
    ax.set_title("Economy per speed domain")
    ax.grid(axis="y", alpha=0.3)


def _plot_bands(ax, total: dict) -> None:
    labels = [label for _, label in SPEED_BANDS]
    bands = total["speed_bands"]
    ax.bar(labels, [bands[b]["time_s"] / 60 for b in labels], color="#17becf", label="time (min)")
    ax.set_ylabel("time (min)")
    ax.set_xlabel("speed band (km/h)")
    ax.tick_params(axis="x", labelrotation=30)
    fuel = ax.twinx()
    fuel.plot(labels, [bands[b]["fuel_l"] or 0.0 for b in labels], color="#d62728", marker="o", label="fuel (L)")
    fuel.set_ylabel("fuel (L)", color="#d62728")
    ax.set_title("Time and fuel per speed band")


def _plot_track(ax, series: DriveSeries) -> None:
    """The drive on the map's axes (longitude scaled by cos(latitude), so distances look right), by speed."""
    fixes = [(lon, lat, v) for lon, lat, v in zip(series.lon, series.lat, series.speed_kmh) if lat is not None]
    lons, lats, speeds = zip(*fixes)
    ax.plot(lons, lats, color="#999999", linewidth=0.6, zorder=1)
    dots = ax.scatter(lons, lats, c=[v or 0.0 for v in speeds], s=4, cmap="viridis", zorder=2)
    ax.plot(lons[0], lats[0], "o", color="#2ca02c", label="start", zorder=3)
    ax.plot(lons[-1], lats[-1], "s", color="#d62728", label="end", zorder=3)
    ax.set_aspect(1 / math.cos(math.radians(sum(lats) / len(lats))))
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    ax.set_title("Track (GPS), colour = speed")
    ax.figure.colorbar(dots, ax=ax, label="km/h", shrink=0.8)
    ax.legend(loc="best", fontsize="small")
    ax.ticklabel_format(useOffset=False)


def _figures(series: DriveSeries, stats: dict, profile) -> dict:
    plt = _pyplot()
    total = stats["total"]
    figures = {}
    fig, ax = plt.subplots(figsize=(10, 3.2))
    _plot_time(ax, series)
    figures["time"] = fig
    fig, ax = plt.subplots(figsize=(5, 3.2))
    _plot_domains(ax, total, _catalog(profile))
    figures["domains"] = fig
    fig, ax = plt.subplots(figsize=(5, 3.2))
    _plot_bands(ax, total)
    figures["bands"] = fig
    if series.has_track:
        fig, ax = plt.subplots(figsize=(5, 4))
        _plot_track(ax, series)
        figures["track"] = fig
    for fig in figures.values():
        fig.tight_layout()
    return figures


def _svg(fig) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    text = buffer.getvalue()
    text = text[text.index("<svg"):]  # inline: drop the XML prolog and doctype
    start, end = text.find("<metadata>"), text.find("</metadata>")
    return text[:start] + text[end + len("</metadata>"):] if start >= 0 <= end else text


def _cell(value, spec: str = ".2f") -> str:
    return "—" if value is None else (format(value, spec) if isinstance(value, float) else html.escape(str(value)))


TABLE_COLUMNS = (("start", "start (local time)", None), ("duration_s", "min", "dur"), ("distance_km", "km", ".2f"),
                 ("fuel_used_l", "L", ".3f"), ("economy_km_per_l", "km/L", ".1f"),
                 ("economy_l_per_100km", "L/100 km", ".2f"), ("economy_mpg_us", "MPG", ".1f"),
                 ("idle_time_s", "idle min", "dur"), ("max_speed_kmh", "max km/h", ".0f"),
                 ("co2_kg", "CO₂ kg", ".2f"), ("fuel_cost", "cost", ".0f"), ("fuel_source", "fuel source", None))


def _table(stats: dict) -> str:
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title, _ in TABLE_COLUMNS)
    rows = []
    entries = [*stats["trips"], *([stats["total"]] if len(stats["trips"]) > 1 else [])]
    for i, trip in enumerate(entries):
        cells = []
        for key, _, spec in TABLE_COLUMNS:
            value = trip[key]
            if key == "start" and i == len(stats["trips"]):
                value = "total"
            elif key == "start":
                value = iso_local_text(value)
            cells.append(f"<td>{_cell(value / 60 if spec == 'dur' else value, '.1f' if spec == 'dur' else spec or '')}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
h1 { font-size: 1.4rem; } .plots { display: flex; flex-wrap: wrap; gap: 1rem; }
.plots svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; margin-top: 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }
th { background: #f3f3f3; } td:first-child, td:last-child { text-align: left; }
.summary { font-size: 1.05rem; } footer { margin-top: 1rem; color: #777; font-size: 0.8rem; }
"""


def render_html(series: DriveSeries, stats: dict, profile, title: str) -> str:
    figures = _figures(series, stats, profile)
    total = stats["total"]
    summary = (f"{len(stats['trips'])} trip(s), {total['distance_km']:.1f} km, "
               f"{_cell(total['fuel_used_l'], '.2f')} L, {_cell(total['economy_km_per_l'], '.1f')} km/L "
               f"(fuel source: {total['fuel_source'] or 'none'})")
    plots = "".join(_svg(fig) for fig in figures.values())
    _pyplot().close("all")
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p class=\"summary\">{html.escape(summary)}</p><div class=\"plots\">{plots}</div>{_table(stats)}"
            f"<footer>firmware_bridge trip report · vehicle profile {html.escape(profile.name)}</footer></body></html>")


def render_png(path, series: DriveSeries, stats: dict, profile, title: str) -> None:
    """One image with all the plots (the track too, with GPS), for sharing."""
    plt = _pyplot()
    columns = 3 if series.has_track else 2
    fig = plt.figure(figsize=(5.5 * columns, 7.5))
    grid = fig.add_gridspec(2, columns)
    _plot_time(fig.add_subplot(grid[0, :]), series)
    _plot_domains(fig.add_subplot(grid[1, 0]), stats["total"], _catalog(profile))
    _plot_bands(fig.add_subplot(grid[1, 1]), stats["total"])
    if series.has_track:
        _plot_track(fig.add_subplot(grid[1, 2]), series)
    total = stats["total"]
    fig.suptitle(f"{title}: {total['distance_km']:.1f} km, {_cell(total['economy_km_per_l'], '.1f')} km/L")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close("all")
