"""Decoded OBD-II values per second through an ELM327: the agent asking one PID per request, the agent asking
up to six (multi-PID), and python-OBD (one command per round trip), in the same run, against the same
ELM327-emulator ("car" scenario), polling the same fast PIDs.

The emulator answers instantly; a real ELM327 at 38400 baud plus the car's ECU takes about 30-60 ms per
request. A pty relay between the client and the emulator adds it: each command line is held LATENCY_MS (the
adapter's and the ECU's response time), and bytes flow at 38400 baud both ways (10 bits a byte), so a longer
answer costs its transfer time. (The emulator's own `delay` setting is not used: it sleeps once per PID of a
multi-PID request and per AT command, which no adapter does.)

Run: `make bench` or `.venv/bin/python benchmarks/bench_elm327.py [--seconds 10] [--latency-ms 40]`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path

import can

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from elm327_harness import Emulator, PtyRelay, open_raw  # noqa: E402

from firmware_bridge.clock import RealClock  # noqa: E402
from firmware_bridge.obd.poller import ObdPoller, PollSettings  # noqa: E402
from firmware_bridge.pipeline import Pipeline  # noqa: E402
from firmware_bridge.sources.live import run_live  # noqa: E402

SERIAL_BAUD = 38400
#: The "car" scenario's fast PIDs as the agent picks them (MAF car): speed, rpm, MAF, fuel status, load,
#: lambda, throttle; python-OBD polls the same commands.
FAST_PIDS = (0x0D, 0x0C, 0x10, 0x03, 0x04, 0x44, 0x11)


def agent_values_per_s(port: str, pids_per_request: int, seconds: float) -> tuple[float, float]:
    """(decoded PID values/s, requests/s) of the agent's poller and pipeline over the Elm327Bus."""
    bus = can.Bus(interface="elm327", channel=port, baudrate=SERIAL_BAUD)
    pipeline = Pipeline()
    counted = {"values": 0}
    counting = threading.Event()

    def count(frame):
        if counting.is_set() and frame.message == "OBD2_RESPONSE" and frame.signals.get("pid") in FAST_PIDS:
            counted["values"] += 1

    pipeline.frame_listeners.append(count)
    settings = PollSettings(max_requests_per_s=1000.0, fast_interval_s=0.0, slow_interval_s=3600.0,
                            max_pids_per_request=pids_per_request)
    poller = ObdPoller(bus, settings, RealClock())
    stop = threading.Event()
    loop = threading.Thread(target=run_live, args=(bus, pipeline, RealClock(), stop, [poller]), daemon=True)
    loop.start()
    poller.start()
    try:
        deadline = time.monotonic() + 30
        while not poller.supported and time.monotonic() < deadline:  # discovery first, not measured
            time.sleep(0.05)
        time.sleep(2.0)  # the slow PIDs' first round, then only fast ones
        sent_before = poller.requests_sent
        counting.set()
        time.sleep(seconds)
        counting.clear()
        requests = poller.requests_sent - sent_before
    finally:
        poller.stop()
        stop.set()
        loop.join(timeout=10)
        bus.shutdown()
    return counted["values"] / seconds, requests / seconds


def python_obd_values_per_s(port: str, seconds: float) -> tuple[float, float]:
    """(decoded values/s, requests/s) of python-OBD querying the same PIDs in turn."""
    import obd

    obd.logger.setLevel(logging.ERROR)
    commands = [obd.commands[1][pid] for pid in FAST_PIDS]
    connection = obd.OBD(port, baudrate=SERIAL_BAUD)
    if not connection.is_connected():
        raise RuntimeError(f"python-OBD could not connect: {connection.status()}")
    try:
        for command in commands:  # warm-up: the first request searches the protocol
            connection.query(command)
        values = requests = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for command in commands:
                requests += 1
                if not connection.query(command).is_null():
                    values += 1
    finally:
        connection.close()
    return values / seconds, requests / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per client")
    parser.add_argument("--latency-ms", type=float, default=40.0, help="adapter + ECU time per request")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as workdir, Emulator(Path(workdir), scenario="car") as emulator:
        def via_relay(measure, *options):
            relay = PtyRelay(open_raw(str(emulator.link)), args.latency_ms / 1000, SERIAL_BAUD).start()
            try:
                return measure(relay.path, *options)
            finally:
                relay.close()

        rows.append(("python-OBD 0.7 (one PID per request)", *via_relay(python_obd_values_per_s, args.seconds)))
        rows.append(("agent, one PID per request", *via_relay(agent_values_per_s, 1, args.seconds)))
        rows.append(("agent, multi-PID (up to 6)", *via_relay(agent_values_per_s, 6, args.seconds)))
    baseline = rows[0][1]
    print(f"ELM327-emulator 'car' scenario through a relay adding {args.latency_ms:g} ms per request and "
          f"{SERIAL_BAUD} baud transfer; {len(FAST_PIDS)} fast PIDs, {args.seconds:g} s each")
    print(f"{'client':40} {'requests/s':>11} {'values/s':>9} {'vs python-OBD':>14}")
    for name, values_per_s, requests_per_s in rows:
        print(f"{name:40} {requests_per_s:11.1f} {values_per_s:9.1f} {values_per_s / baseline:13.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
