"""Child process for the power-loss test: appends numbered batches to a spool and sends some of them,
printing each batch number once its commit returned. The parent kills it with SIGKILL at random moments."""

import sys

from firmware_bridge.spool.store import Spool

path, start = sys.argv[1], int(sys.argv[2])
spool = Spool(path, ["influx"])
n = start
while True:
    lines = "".join(f"m,k=v seq={n}i,i={i}i {n * 1000 + i}\n" for i in range(200)).encode()
    spool.append(lines, 200)
    print(n, flush=True)
    if n % 3 == 0:  # the sender side too: acknowledge the oldest batch now and then
        batch = spool.oldest("influx")
        if batch is not None:
            spool.acknowledge("influx", batch.id)
    n += 1
