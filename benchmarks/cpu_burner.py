"""The shadow benchmark's control: the shadow process's CPU, without the shadowing.

It spins BUSY_US of CPU every EVERY_US, at the shadow process's own niceness, and does nothing
else: no sockets, no wake-ups of anyone. Run beside the 0 % proxy at the share of a CPU the
shadow process was measured to use, it shows what that much background CPU alone costs the
client on this machine, whoever spends it. Two cores shared by wrk, two nginx and the proxy
leave no core free for background work, so this is the floor any shadowing design pays here.

    python -m benchmarks.cpu_burner --busy-us 110 --every-us 330
"""
from __future__ import annotations

import argparse
import os
import time

from proxy.shadow.process import SHADOW_NICENESS


def burn(busy_s: float, every_s: float) -> None:
    """Spin `busy_s`, then sleep until the next slot; slots are fixed in advance so a late
    wake-up does not lower the average share."""
    clock = time.perf_counter
    slot = clock()
    while True:
        end = clock() + busy_s
        while clock() < end:
            pass
        slot += every_s
        pause = slot - clock()
        if pause > 0:
            time.sleep(pause)
        else:
            slot = clock()          # far behind (the machine was busy): start afresh


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--busy-us", type=float, required=True)
    parser.add_argument("--every-us", type=float, required=True)
    args = parser.parse_args()
    if not 0 < args.busy_us <= args.every_us:
        parser.error("need 0 < --busy-us <= --every-us")
    os.nice(SHADOW_NICENESS)
    burn(args.busy_us / 1e6, args.every_us / 1e6)


if __name__ == "__main__":
    main()
