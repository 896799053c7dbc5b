"""Learning an unknown car: the broadcast signals that carry what its OBD-II answers say.

A few minutes of driving with OBD-II polling on give, for speed, rpm and the other quantities the ECU answers,
pairs of (OBD-II value, broadcast payloads at that moment). :mod:`.evidence` gathers them in bounded memory,
:mod:`.fit` finds each quantity's signal, :mod:`.folder` writes the car folder that lets every command read
the car passively from then on, :mod:`.live` does the same while ``run`` polls.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from firmware_bridge.learn.evidence import QUANTITIES, Evidence
from firmware_bridge.learn.fit import Finding, Learner, Missing
from firmware_bridge.records import FrameBlock
from firmware_bridge.sources.frame_blocks import read_blocks
from firmware_bridge.sources.logs import LogProblems


def gather(blocks: Iterable[FrameBlock], evidence: Evidence | None = None) -> Evidence:
    evidence = evidence or Evidence()
    for block in blocks:
        evidence.feed(block)
    return evidence


def learn_logs(paths: Iterable[str | Path], problems: LogProblems | None = None
               ) -> tuple[Evidence, list[Finding], list[Missing]]:
    """The evidence of the logs and what it shows (problems: unreadable lines, counted)."""
    evidence = gather(read_blocks(paths, problems if problems is not None else LogProblems()))
    findings, missing = Learner(evidence).learn()
    return evidence, findings, missing


__all__ = ["QUANTITIES", "Evidence", "Finding", "Learner", "Missing", "gather", "learn_logs"]
