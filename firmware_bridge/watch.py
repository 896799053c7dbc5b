"""The agent says what it sees: one WARNING line when a car shows nothing, and why.

A newcomer's first drive fails silently in a few typical ways: no frames at all (wiring, bitrate, a
listen-only adapter, a car whose bus only speaks when asked), frames that no loaded database describes, or
frames that decode into signals none of which says speed or rpm. Each is said once, with what to try next.
(The OBD-II poller says on its own when no ECU answers.)
"""

from __future__ import annotations

import logging

log = logging.getLogger("firmware_bridge")

#: Unknown IDs named in a warning (a busy bus has dozens).
IDS_NAMED = 8


def _ids(ids: list[tuple[int, bool]]) -> str:
    named = ", ".join(f"0x{i:08X}" if extended else f"0x{i:03X}" for i, extended in ids[:IDS_NAMED])
    return named + (f" and {len(ids) - IDS_NAMED} more" if len(ids) > IDS_NAMED else "")


class BusWatch:
    """Looks at the pipeline's counts and quantities; each finding is logged once."""

    def __init__(self, pipeline, where: str, polling: bool | None = None) -> None:
        self.pipeline = pipeline
        self.where = where
        self.polling = polling  # None: a log (polling is not the user's to switch on)
        self.said: set[str] = set()

    def _say(self, key: str, text: str) -> None:
        if key not in self.said:
            self.said.add(key)
            log.warning(text)

    def check(self, silent_for_s: float | None = None) -> None:
        """``silent_for_s``: live, how long the agent has listened; None: a log read to its end."""
        counts = self.pipeline.decoder.counts
        if counts.total == 0:
            if silent_for_s is None:
                self._say("silent", f"{self.where}: no CAN frames in it")
            else:
                hint = "" if self.polling else "; if the car only talks when asked, try --obd"
                self._say("silent", f"no frames from {self.where} for {silent_for_s:.0f} s: check the wiring, "
                                    f"the bitrate and that the adapter is not in listen-only mode{hint}")
            return
        if counts.decoded == 0:
            ids = self.pipeline.decoder.unknown_ids()
            self._say("undecoded", f"{counts.total} frames from {self.where}, none of which the loaded databases "
                                   f"decode (IDs {_ids(ids)}): run `firmware-bridge inspect` on a log of this bus "
                                   "to find a DBC or a signal map for it")
            return
        wanted = ("speed_kmh",) if self.pipeline.profile.electric else ("speed_kmh", "engine_rpm")
        missing = [q for q in wanted if q not in self.pipeline.state.times]
        if missing:
            self._say("unmapped", f"{counts.decoded} frames from {self.where} decode, but no signal gives "
                                  f"{' or '.join(missing)}: map one with --signal-map (`firmware-bridge inspect` "
                                  "prints a map of likely signals)")
