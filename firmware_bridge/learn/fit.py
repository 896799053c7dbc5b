"""Which broadcast bits carry a quantity the OBD-II answers give: search, bit boundaries, scale and offset.

1. **Search.** For every frame ID, byte order, start and length (up to 32 bits, signed or not) the linear fit
   of the raw value to the OBD-II values is scored by R², all at once from each ID's bit covariances (the
   variance of a sum of weighted bits is a double prefix sum of their covariance matrix), so a bus of a
   hundred IDs costs a few matrix products per quantity, not a fit per candidate.
2. **Bit boundaries.** The top of a signal is where the fit says it is (a foreign bit above breaks it). The
   bottom is not: an OBD-II answer in whole km/h cannot tell whether 0.01 km/h bits are there. A bit below a
   signal belongs to it when adding it makes the signal smoother frame to frame: with the signal's next bit
   appended, the second difference of three consecutive frames shrinks by the quantisation (−3/8 of a step²
   on average), while a counter, checksum or any unrelated bit adds its own flips (+3/8 for a random bit).
   Above the top, bits that never changed during the drive are taken up to the byte boundary (values the
   drive did not reach, e.g. motorway speeds after a town drive, still decode).
3. **Scale and offset.** Least squares, then the nearest round value (1, 2, 2.5, 4, 5 × 10ⁿ, 2ⁿ, 100/(2ⁿ−1),
   times mph or m/s for speeds) when it lies within the fit's own uncertainty, so 0.01 mph or 1/128 km/h come
   out as they are; the offset likewise to the roundest number within its uncertainty.
4. **Confidence** = R² × coverage (share of answers with a fresh frame of that ID) × evidence (answers, up
   to 100) × separation (how far its RMSE is ahead of the best other candidate, full at 20 %; a candidate
   decoding to the same values, a copy of the signal in another frame, is no rival).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from firmware_bridge.constants import KM_PER_MILE, KMH_PER_MS
from firmware_bridge.decode.dbc import bundled_dbc_path, load_database
from firmware_bridge.learn.evidence import BITS, Evidence, FrameIdStats, QuantitySamples, bit_columns
from firmware_bridge.state.vehicle import DEFAULT_STALE_S

MAX_LENGTH = 32
#: Answers needed before a quantity is judged at all; full evidence from this many.
MIN_SAMPLES, FULL_EVIDENCE_SAMPLES = 30, 100
#: Share of answers an ID must have a fresh frame for (its frames no older than the signal map's stale time).
MIN_COVERAGE = 0.5
#: The OBD-II values must span this many of their own steps: a constant tells nothing about a scale.
MIN_SPAN_STEPS = 10
#: Relative RMSE gain that shows a bit below a signal is its own.
FIT_GAIN = 0.005
#: RMSE lead over the next candidate that counts as fully separated.
FULL_MARGIN = 0.2
#: Reported as found from this confidence (and R²) on.
MIN_CONFIDENCE, MIN_R2 = 0.5, 0.9
#: The largest value each quantity's signal must be able to hold (a top bit the drive never set is kept up to
#: here): beyond any kei car, and most others.
PLAUSIBLE_MAX = {"speed_kmh": 250.0, "engine_rpm": 8000.0, "coolant_c": 130.0, "throttle_pct": 100.0,
                 "fuel_level_pct": 100.0, "map_kpa": 250.0, "maf_gps": 300.0}
#: Units a quantity's broadcast may use, as factors to the canonical unit (km/h per mph, per m/s; g/s per kg/h).
_UNIT_FACTORS = {"speed_kmh": (1.0, KM_PER_MILE, KMH_PER_MS), "maf_gps": (1.0, 1.0 / KMH_PER_MS)}

#: Big-endian (Motorola) signals are consecutive in the frame read as one big-endian integer: position p there
#: is little-endian bit number _BE_TO_LE[p]; a mask converts by swapping its bytes.
_BE_TO_LE = np.array([8 * (7 - p // 8) + p % 8 for p in range(BITS)])
_ORDERS = ("little_endian", "big_endian")


def _nice_scales(quantity: str) -> np.ndarray:
    bases = [m * 10.0**e for m in (1, 2, 2.5, 4, 5) for e in range(-6, 5)]
    bases += [2.0**k for k in range(-16, 9)] + [100.0 / (2**n - 1) for n in (8, 10, 12, 16)]
    return np.unique([b * f for b in bases for f in _UNIT_FACTORS.get(quantity, (1.0,))])


@dataclass(frozen=True)
class Layout:
    """Where a signal sits: cantools' numbering (start = LSB for little-endian, MSB for big-endian)."""

    frame_id: int
    extended: bool
    start_bit: int
    length: int
    byte_order: str
    signed: bool

    def raw(self, values: np.ndarray) -> np.ndarray:
        """Raw integers of the signal in little-endian uint64 payloads."""
        order, low = _position(self)
        return _raw(_in_order(values, order), low, self.length, self.signed)


@dataclass(frozen=True)
class Finding:
    """A quantity found in a broadcast signal, and how well it fits."""

    quantity: str
    layout: Layout
    scale: float
    offset: float
    fit_rmse: float
    r2: float
    coverage: float
    samples: int
    margin: float
    confidence: float
    runner_up: str | None
    copies: tuple[str, ...] = ()

    @property
    def found(self) -> bool:
        return self.confidence >= MIN_CONFIDENCE and self.r2 >= MIN_R2


@dataclass(frozen=True)
class Missing:
    """A quantity the evidence could not settle, and why (for the report)."""

    quantity: str
    reason: str


def _position(layout: Layout) -> tuple[int, int]:
    """(byte order index, lowest position in that order's numbering)."""
    if layout.byte_order == "little_endian":
        return 0, layout.start_bit
    msb = int(np.flatnonzero(_BE_TO_LE == layout.start_bit)[0])
    return 1, msb - layout.length + 1


def _in_order(values: np.ndarray, order: int) -> np.ndarray:
    return values if order == 0 else values.byteswap()


def _raw(values: np.ndarray, low: int, length: int, signed: bool) -> np.ndarray:
    raw = ((values >> np.uint64(low)) & np.uint64((1 << length) - 1)).astype(np.int64)
    if signed:
        raw = np.where(raw >= 1 << (length - 1), raw - (1 << length), raw)
    return raw


def _mask(order: int, low: int, length: int) -> int:
    mask = ((1 << length) - 1) << low
    return mask if order == 0 else int.from_bytes(mask.to_bytes(8, "little"), "big")


def _describe(stats: FrameIdStats, order: int, low: int, length: int) -> str:
    """A candidate as a DBC would write it: frame, start bit | length, byte order."""
    start = low if order == 0 else int(_BE_TO_LE[low + length - 1])
    return f"0x{stats.frame_id:X} {start}|{length} {_ORDERS[order].replace('_', '-')}"


@dataclass
class _Candidates:
    """Every scored candidate of one quantity: parallel arrays."""

    column: np.ndarray
    order: np.ndarray
    low: np.ndarray
    length: np.ndarray
    signed: np.ndarray
    r2: np.ndarray
    mask: np.ndarray  # uint64, little-endian bit numbers covered


def _score(samples: QuantitySamples, stats: FrameIdStats, rows: np.ndarray, y: np.ndarray) -> np.ndarray:
    """R² of every (order, low, length, signed) of one frame ID against y (rows: answers with a fresh frame).

    Returns rows of (order, low, length, signed, r2) for the candidates with R² > 0.2.
    """
    if not stats.flips.any():  # a constant frame carries nothing
        return np.zeros((0, 5))
    bits = bit_columns(samples.payload[rows, stats.column, -1]).astype(np.float32)
    n = len(y)
    mean = bits.mean(axis=0, dtype=np.float64)
    # Co-occurrence counts of 0/1 bits are exact in float32; einsum, not BLAS: a 64x64 product is too small
    # for BLAS threads, which on a busy Pi-class machine cost more than the product itself.
    cov_bits = np.einsum("ni,nj->ij", bits, bits).astype(np.float64) / n - np.outer(mean, mean)
    yc = y - y.mean()
    var_y = float(yc @ yc) / n
    cov_y = yc @ bits.astype(np.float64) / n
    varying = np.diag(cov_bits) > 0
    weights = 2.0 ** np.arange(MAX_LENGTH)
    diagonal = np.arange(MAX_LENGTH)
    low, length = np.meshgrid(np.arange(BITS), np.arange(1, MAX_LENGTH + 1), indexing="ij")
    out = []
    for order in (0, 1):
        perm = np.arange(BITS) if order == 0 else _BE_TO_LE
        cov = np.pad(cov_bits[np.ix_(perm, perm)], (0, MAX_LENGTH))
        blocks = np.lib.stride_tricks.sliding_window_view(cov, (MAX_LENGTH, MAX_LENGTH))[np.arange(BITS),
                                                                                          np.arange(BITS)]
        var_u = (blocks * np.outer(weights, weights)).cumsum(1).cumsum(2)[:, diagonal, diagonal]
        cy = np.lib.stride_tricks.sliding_window_view(np.pad(cov_y[perm], (0, MAX_LENGTH)), MAX_LENGTH)[:BITS]
        cov_u = (cy * weights).cumsum(1)
        top = blocks[:, diagonal, diagonal]
        var_s, cov_s = np.zeros_like(var_u), np.zeros_like(cov_u)  # the top bit weighs -2^(L-1)
        var_s[:, 1:] = 2 * var_u[:, :-1] + 2 * weights[1:] ** 2 * top[:, 1:] - var_u[:, 1:]
        cov_s[:, 1:] = cov_u[:, :-1] - weights[1:] * cy[:, 1:]
        vary = np.concatenate([varying[perm], np.zeros(MAX_LENGTH, dtype=bool)])
        ok = vary[low] & vary[low + length - 1] & (low + length <= BITS)
        for signed, var, cv in ((False, var_u, cov_u), (True, var_s, cov_s)):
            good = ok & (var > 1e-12) & (length >= 1 + signed)
            r2 = np.zeros_like(var)
            r2[good] = cv[good] ** 2 / (var[good] * var_y)
            keep = np.nonzero(r2 > 0.2)
            out.append(np.column_stack([np.full(len(keep[0]), order), keep[0], keep[1] + 1,
                                        np.full(len(keep[0]), signed), r2[keep]]))
    return np.concatenate(out)


def _masks(order: np.ndarray, low: np.ndarray, length: np.ndarray) -> np.ndarray:
    """uint64 masks of the little-endian bit numbers each candidate covers."""
    mask = ((np.uint64(1) << length.astype(np.uint64)) - np.uint64(1)) << low.astype(np.uint64)
    return np.where(order == 0, mask, mask.byteswap())


def _fit_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(scale, offset, rmse) of y ≈ scale·x + offset."""
    xm, ym = x.mean(), y.mean()
    sxx = float(((x - xm) ** 2).sum())
    scale = float(((x - xm) * (y - ym)).sum()) / sxx if sxx else 0.0
    offset = ym - scale * xm
    return scale, offset, float(np.sqrt(np.mean((y - scale * x - offset) ** 2)))


def _snap_scale(quantity: str, x: np.ndarray, scale: float, rmse: float) -> float:
    if scale == 0:
        return scale
    spread = float(x.std()) * math.sqrt(len(x))
    relative = 4 * rmse / (spread * abs(scale)) if spread else 1.0
    tolerance = min(0.01, max(2e-4, relative))
    nice = _nice_scales(quantity)
    best = nice[np.argmin(np.abs(np.log(nice / abs(scale))))]
    return math.copysign(float(best), scale) if abs(best / abs(scale) - 1) <= tolerance else float(f"{scale:.6g}")


def _snap_offset(offset: float, x_scaled: np.ndarray, rmse: float, obd_step: float) -> float:
    n = len(x_scaled)
    var = float(x_scaled.var())
    se = rmse * math.sqrt(1 / n + (float(x_scaled.mean()) ** 2 / (n * var) if var else 0.0))
    tolerance = max(4 * se, 0.6 * obd_step)
    for grid in (math.inf, 10000, 1000, 100, 50, 10, 5, 1, 0.5, 0.25, 0.1, 0.05, 0.01, 0.001):
        snapped = 0.0 if grid == math.inf else round(offset / grid) * grid
        if abs(snapped - offset) <= tolerance:
            return float(f"{snapped:.10g}")
    return float(f"{offset:.6g}")


def _smoother_with(triples: np.ndarray, order: int, bit: int, high: int, signed: bool) -> bool | None:
    """Does appending `bit` below [bit + 1, high] make the signal smoother over three consecutive frames?

    None when the frames say nothing (the signal hardly moved between them: a slow temperature).
    """
    v = _in_order(triples, order)
    coarse = _raw(v, bit + 1, high - bit, signed).astype(np.float64)
    fine = _raw(v, bit, high - bit + 1, signed).astype(np.float64)
    d_coarse = coarse[:, 1] - (coarse[:, 0] + coarse[:, 2]) / 2
    d_fine = fine[:, 1] - (fine[:, 0] + fine[:, 2]) / 2
    change = d_fine**2 - 4 * d_coarse**2
    calm = np.abs(d_coarse) <= 2
    if calm.sum() >= 20:
        change = change[calm]
    if np.count_nonzero(change) < 5:
        return None
    return float(change.mean()) < 0


class Learner:
    """Fits the quantities of an :class:`Evidence`; one call of :meth:`learn` per decision."""

    def __init__(self, evidence: Evidence) -> None:
        self.evidence = evidence
        obd = load_database([bundled_dbc_path("obd2.dbc")], bundled=False).get_message_by_name("OBD2_RESPONSE")
        self.obd_step = {q: obd.get_signal_by_name(s).scale for q, s in evidence.signals.items()}

    def learn(self) -> tuple[list[Finding], list[Missing]]:
        """Findings (found or not) and quantities without enough evidence; higher-priority quantities claim
        their bits first, so two quantities never share a signal."""
        claimed: dict[int, int] = {}
        findings, missing = [], []
        for quantity, samples in self.evidence.samples.items():
            result = self._quantity(quantity, samples, claimed)
            if isinstance(result, Missing):
                missing.append(result)
                continue
            findings.append(result)
            if result.found:
                column = self.evidence.ids[(result.layout.frame_id, result.layout.extended)].column
                order, low = _position(result.layout)
                claimed[column] = claimed.get(column, 0) | _mask(order, low, result.layout.length)
        return findings, missing

    def _quantity(self, quantity: str, samples: QuantitySamples, claimed: dict[int, int]) -> Finding | Missing:
        n = samples.n
        if n == 0:
            return Missing(quantity, "no OBD-II answers")
        y_all = samples.y[:n]
        step = self.obd_step[quantity]
        if n < MIN_SAMPLES:
            return Missing(quantity, f"only {n} OBD-II answers (at least {MIN_SAMPLES} needed)")
        if float(y_all.max() - y_all.min()) < MIN_SPAN_STEPS * step:
            return Missing(quantity, f"the OBD-II values hardly changed ({y_all.min():g} to {y_all.max():g}): "
                                     "nothing to fit a signal to")
        fresh = samples.age_s[:n] <= DEFAULT_STALE_S
        parts = []
        for stats in self.evidence.columns:
            rows = np.flatnonzero(fresh[:, stats.column])
            if len(rows) < max(MIN_SAMPLES, MIN_COVERAGE * n):
                continue
            found = _score(samples, stats, rows, y_all[rows])
            parts.append(np.column_stack([np.full(len(found), stats.column), found]))
        table = np.concatenate(parts) if parts else np.zeros((0, 6))
        column, order, low, length, signed, r2 = table.T
        column, order, low, length = (a.astype(np.int64) for a in (column, order, low, length))
        signed = signed.astype(bool)
        mask = _masks(order, low, length)
        claims = np.array([claimed.get(c, 0) for c in column.tolist()], dtype=np.uint64)
        keep = (mask & claims) == 0
        if not keep.any():
            return Missing(quantity, "no broadcast signal follows it (or no frame ID was seen often enough "
                                     "around the answers)")
        # Best R² first; on a tie, unsigned before signed.
        ranked = np.flatnonzero(keep)[np.lexsort((signed[keep], -r2[keep]))]
        scored = _Candidates(column[ranked], order[ranked], low[ranked], length[ranked], signed[ranked],
                             r2[ranked], mask[ranked])
        col, o, lo, hi, sg = (int(scored.column[0]), int(scored.order[0]), int(scored.low[0]),
                              int(scored.low[0] + scored.length[0] - 1), bool(scored.signed[0]))
        stats = self.evidence.columns[col]
        rows = np.flatnonzero(fresh[:, col])
        lo = self._bottom(quantity, samples, rows, stats, o, lo, hi, sg)
        best = None
        for top in self._tops(quantity, samples, rows, stats, o, lo, hi, sg):
            finding = self._finish(quantity, samples, stats, rows, o, lo, top, sg)
            if best is None or self._rounder(finding, best):
                best = finding
        return self._separate(best, samples, fresh, scored)

    def _bottom(self, quantity: str, samples: QuantitySamples, rows: np.ndarray, stats: FrameIdStats, order: int,
                low: int, high: int, signed: bool) -> int:
        """The signal's lowest bit. The fit vouches for the bits worth at least an OBD-II step (or twice its
        RMSE). Below those, the next bit is the signal's when it makes the fit better (it is worth enough to
        show against the answers) or the signal smoother; a counter, a checksum or another signal's top bit
        does neither."""
        values = _in_order(samples.payload[rows, stats.column, -1], order)
        y = samples.y[rows]

        def rmse(bottom: int) -> float:
            return _fit_line(_raw(values, bottom, high - bottom + 1, signed).astype(np.float64), y)[2]

        scale, _, error = _fit_line(_raw(values, low, high - low + 1, signed).astype(np.float64), y)
        visible = max(2 * error, self.obd_step[quantity])
        while low < high and abs(scale) < visible:  # the lowest bit is worth |scale|
            low, scale = low + 1, scale * 2
        triples = samples.payload[rows, stats.column]
        varies = (stats.flips > 0)[np.arange(BITS) if order == 0 else _BE_TO_LE]
        while low > 0 and high - low + 1 < MAX_LENGTH and varies[low - 1]:
            if not (rmse(low - 1) < (1 - FIT_GAIN) * rmse(low)
                    or _smoother_with(triples, order, low - 1, high, signed)):
                break
            low -= 1
        return low

    def _tops(self, quantity: str, samples: QuantitySamples, rows: np.ndarray, stats: FrameIdStats, order: int,
              low: int, high: int, signed: bool) -> list[int]:
        """Candidate top bits: bits that never changed and were 0 are taken until the signal can hold the
        quantity's plausible maximum (the drive may not have reached it); and, when bits that were always 1
        sit right above (a value living high in its range), a second candidate with those too."""
        if signed:
            return [high]
        perm = np.arange(BITS) if order == 0 else _BE_TO_LE
        in_frame = perm < 8 * max(stats.max_length, 1)  # a frame shorter than 8 bytes ends where it ends
        constant, one = (stats.flips == 0)[perm] & in_frame, (stats.ones > 0)[perm]
        values = _in_order(samples.payload[rows, stats.column, -1], order)

        def zeros_up(top: int) -> int:
            x = _raw(values, low, top - low + 1, False).astype(np.float64)
            scale, offset, _ = _fit_line(x, samples.y[rows])
            if scale <= 0:
                return top
            needed = (PLAUSIBLE_MAX[quantity] - offset) / scale
            while (top + 1 < BITS and top - low + 1 < MAX_LENGTH and constant[top + 1] and not one[top + 1]
                   and (1 << (top - low + 1)) <= needed):
                top += 1
            return top

        tops = [zeros_up(high)]
        top = high
        while top + 1 < BITS and top - low + 1 < MAX_LENGTH and constant[top + 1] and one[top + 1]:
            top += 1
        if top > high:
            tops.append(zeros_up(top))
        return tops

    def _finish(self, quantity, samples, stats, rows, order, low, high, signed) -> Finding:
        length = min(high - low + 1, MAX_LENGTH)
        start = low if order == 0 else int(_BE_TO_LE[low + length - 1])
        layout = Layout(stats.frame_id, stats.extended, start, length, _ORDERS[order], signed)
        y = samples.y[rows]
        x = layout.raw(samples.payload[rows, stats.column, -1]).astype(np.float64)
        scale, offset, rmse = _fit_line(x, y)
        scale = _snap_scale(quantity, x, scale, rmse)
        offset = float(np.mean(y - scale * x))
        offset = _snap_offset(offset, scale * x, rmse, self.obd_step[quantity])
        residual = y - (scale * x + offset)
        rmse = float(np.sqrt(np.mean(residual**2)))
        var_y = float(y.var())
        return Finding(quantity, layout, scale, offset, rmse, 1 - rmse**2 / var_y if var_y else 0.0,
                       len(rows) / samples.n, len(rows), 1.0, 0.0, None)

    @staticmethod
    def _rounder(a: Finding, b: Finding) -> bool:
        """Prefer the layout whose offset came out round (0, then fewer significant digits), then the fit."""
        def digits(v: float) -> int:
            return 0 if v == 0 else len(f"{abs(v):.10g}".replace(".", "").strip("0"))
        if digits(a.offset) != digits(b.offset):
            return digits(a.offset) < digits(b.offset)
        return a.fit_rmse < b.fit_rmse

    def _separate(self, best: Finding, samples: QuantitySamples, fresh: np.ndarray, scored: list) -> Finding:
        """Margin over the best candidate elsewhere that is not a copy of the same values; the confidence."""
        n = samples.n
        y_all = samples.y[:n]
        best_column = self.evidence.ids[(best.layout.frame_id, best.layout.extended)].column
        order, low = _position(best.layout)
        best_mask = _mask(order, low, best.layout.length)
        best_pred = best.layout.raw(samples.payload[:n, best_column, -1]) * best.scale + best.offset
        runner_up, rmse_next, copies, checked = None, math.inf, [], 0
        for i in range(len(scored.r2)):
            column = int(scored.column[i])
            if column == best_column and int(scored.mask[i]) & best_mask:
                continue
            stats = self.evidence.columns[column]
            c_order, c_low, c_length = int(scored.order[i]), int(scored.low[i]), int(scored.length[i])
            description = _describe(stats, c_order, c_low, c_length)
            rmse = float(np.sqrt(max(0.0, 1 - scored.r2[i]) * y_all.var()))
            if checked < 10 and rmse < 1.5 * best.fit_rmse + 1e-12:
                checked += 1
                both = np.flatnonzero(fresh[:, column] & fresh[:, best_column])
                raw = _raw(_in_order(samples.payload[both, column, -1], c_order), c_low, c_length,
                           bool(scored.signed[i])).astype(np.float64)
                if len(both) >= MIN_SAMPLES:
                    scale, offset, _ = _fit_line(raw, y_all[both])
                    if np.sqrt(np.mean((raw * scale + offset - best_pred[both]) ** 2)) < 0.5 * best.fit_rmse:
                        if not any(c.split()[0] == description.split()[0] for c in copies):
                            copies.append(description)
                        continue
            runner_up, rmse_next = description, rmse
            break
        margin = 1.0 if not math.isfinite(rmse_next) or rmse_next == 0 else max(0.0, 1 - best.fit_rmse / rmse_next)
        evidence = min(1.0, best.samples / FULL_EVIDENCE_SAMPLES)
        confidence = max(0.0, best.r2) * best.coverage * evidence * min(1.0, margin / FULL_MARGIN)
        return Finding(**{**best.__dict__, "margin": round(margin, 4), "confidence": round(confidence, 3),
                          "runner_up": runner_up, "copies": tuple(copies)})
