"""Fill-ups and calibration as InfluxDB points (the Efficiency dashboard's estimated vs pumped km/L).

- ``fillup``: tag ``vehicle``; timestamp = the fill-up; fields ``litres``, ``odometer_km``, ``partial`` and,
  when a price was given, ``price_per_l`` and ``cost``.
- ``calibration``: tags ``vehicle``, ``fuel_source``; timestamp = the full fill-up closing an interval, so
  re-sending overwrites; fields ``estimated_km_per_l`` (the uncorrected estimate), ``pumped_km_per_l``,
  ``interval_factor`` (this interval's pumped ÷ estimated), ``distance_km``, ``pumped_l``, ``estimated_l``,
  ``coverage``, ``usable`` and, once the fit has enough intervals, ``factor`` (the correction fitted from
  the intervals up to this one), ``intervals``, ``spread`` and, for speed-density, ``volumetric_efficiency``.
"""

from __future__ import annotations

from firmware_bridge.calibration.fit import Interval, fit
from firmware_bridge.calibration.ledger import Fillup
from firmware_bridge.records import Point


def fillup_point(fillup: Fillup, vehicle_id: str) -> Point:
    fields: dict[str, float | bool] = {"litres": fillup.litres, "odometer_km": fillup.odometer_km,
                                       "partial": fillup.partial}
    if fillup.price_per_l is not None:
        fields.update(price_per_l=fillup.price_per_l, cost=fillup.price_per_l * fillup.litres)
    return Point("fillup", fillup.t, fields, {"vehicle": vehicle_id})


def calibration_points(spans: list[Interval], vehicle_id: str, min_intervals: int,
                       profile_ve: float | None) -> list[Point]:
    points = []
    for i, interval in enumerate(spans):
        fields: dict[str, float | bool] = {"distance_km": interval.distance_km, "pumped_l": interval.pumped_l,
                                           "estimated_l": interval.estimated_l, "coverage": interval.coverage,
                                           "trips": float(interval.trips), "usable": interval.usable}
        for key in ("pumped_km_per_l", "estimated_km_per_l"):
            if getattr(interval, key) is not None:
                fields[key] = getattr(interval, key)
        if interval.factor is not None:
            fields["interval_factor"] = interval.factor
        fitted = fit(spans[:i + 1], min_intervals).get(interval.fuel_source)
        if fitted is not None:
            fields.update(factor=fitted.factor, intervals=float(fitted.intervals))
            if fitted.spread is not None:
                fields["spread"] = fitted.spread
            ve = fitted.volumetric_efficiency(profile_ve) if profile_ve is not None else None
            if ve is not None:
                fields["volumetric_efficiency"] = ve
        points.append(Point("calibration", interval.end.t, fields,
                            {"vehicle": vehicle_id, "fuel_source": interval.fuel_source or ""}))
    return points
