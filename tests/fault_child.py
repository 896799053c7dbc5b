"""Child process of the SIGKILL test: the agent's spool parts (writer, spool, sender to a real InfluxDB) that kill
themselves with SIGKILL in one phase: ``append`` (before a commit starts), ``commit`` (inside the commit's
transaction), ``send`` (the server has the batch, the spool does not know yet) or ``acknowledge`` (inside the
acknowledgement's transaction); ``none`` runs to the end. Prints each point's number once its commit returned.

usage: fault_child.py SPOOL URL DB PHASE KILL_AT START COUNT
"""

import os
import signal
import sys
import time

from firmware_bridge.records import Point
from firmware_bridge.sinks.influx import InfluxTarget, make_writer
from firmware_bridge.spool.queue import SpoolWriter
from firmware_bridge.spool.sender import Sender
from firmware_bridge.spool.store import Spool

path, url, db, phase = sys.argv[1:5]
kill_at, start, count = (int(a) for a in sys.argv[5:8])
calls = {"append": 0, "commit": 0, "send": 0, "acknowledge": 0}


def reached(name: str) -> None:
    calls[name] += 1
    if name == phase and calls[name] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)


class KillingSpool(Spool):
    def append(self, lines, points):
        reached("append")
        batch_id = super().append(lines, points)
        numbers = [line.split(b"seq=")[1].split(b"i")[0].decode() for line in lines.splitlines()]
        print(" ".join(numbers), flush=True)
        return batch_id

    def _enforce_bounds(self, now_s):  # inside append's transaction, after the batch's rows
        reached("commit")
        super()._enforce_bounds(now_s)

    def _settle(self, sink, batch_id):  # inside acknowledge's transaction
        reached("acknowledge")
        super()._settle(sink, batch_id)


class KillingWriter:
    def __init__(self, writer):
        self.writer = writer

    def write(self, lines):
        self.writer.write(lines)
        reached("send")


spool = KillingSpool(path, ["influx"])
sender = Sender(spool, "influx", KillingWriter(make_writer(InfluxTarget(url=url, api="v1", bucket=db))),
                backoff_start_s=0.05, backoff_max_s=0.2)
writer = SpoolWriter(spool, sender.wake, flush_s=0.01, batch_points=50)
sender.start()
for seq in range(start, start + count):
    writer.put(Point("m", 1775034000 + seq / 1000, {"seq": seq}, {"vehicle": "kei"}))
    if seq % 50 == 0:
        time.sleep(0.01)  # points arrive over time, as on a bus
writer.close()
deadline = time.monotonic() + 60
while not sender.idle() and time.monotonic() < deadline:
    time.sleep(0.02)
sender.stop()
spool.close()
