#!/usr/bin/env python3
"""make-seeds.py HARNESS OUTDIR — a seed corpus for fuzz-neg.

Each seed is a real conversation in fuzz-neg's input layout: the fuzz target's
storage is rebuilt here with the same splitmix64 items, a peer set is derived
from it (some shared, some only on one side), and two tests/neg-harness
processes hold the conversation; the messages the fuzz target's side would
receive become the seed. Starting from valid messages lets the fuzzer reach
the deep parts of reconcile (bounds, IdLists, splitting, frame limits) at once.
"""
import os
import random
import subprocess
import sys

M64 = (1 << 64) - 1
LIMITS = [0, 4096, 4500, 60000]


def splitmix(state):
    state = (state + 0x9E3779B97F4A7C15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)


def fuzz_items(n, seed, tsmode):
    s, items = seed, []
    for _ in range(n):
        idb = b""
        for _ in range(4):
            s, r = splitmix(s)
            idb += r.to_bytes(8, "little")
        s, r = splitmix(s)
        ts = [1000, 1000 + r % 4, r % 2000000000, r % M64][tsmode]
        items.append((ts, idb.hex()))
    return items


class Harness:
    def __init__(self, path, items, fsl):
        env = dict(os.environ, FRAMESIZELIMIT=str(fsl))
        self.p = subprocess.Popen([path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, env=env)
        for ts, idh in items:
            self.p.stdin.write(f"item,{ts},{idh}\n")
        self.p.stdin.write("seal\n")

    def send(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def read_until_msg(self):
        while True:
            line = self.p.stdout.readline().strip()
            if not line:
                raise RuntimeError("harness ended")
            if line == "done":
                return None
            if line.startswith("msg,"):
                return line[4:]

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def conversation(harness, ours, theirs, fsl, we_initiate):
    """Messages our side receives, as hex strings."""
    init = Harness(harness, ours if we_initiate else theirs, fsl)
    resp = Harness(harness, theirs if we_initiate else ours, fsl)
    received = []
    init.send("initiate")
    msg = init.read_until_msg()
    for _ in range(200):
        if not we_initiate:
            received.append(msg)
        resp.send("msg," + msg)
        reply = resp.read_until_msg()
        if we_initiate:
            received.append(reply)
        init.send("msg," + reply)
        msg = init.read_until_msg()
        if msg is None:
            break
    init.close()
    resp.close()
    return received


def main():
    harness, outdir = sys.argv[1], sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    rnd = random.Random(77)
    count = 0
    for n in (0, 1, 5, 40, 120, 255):
        for tsmode in range(4):
            for role in (0, 1):
                fsl_i = rnd.randrange(4)
                seed = rnd.randrange(256)
                ours = fuzz_items(n, seed, tsmode)
                theirs = [it for it in ours if rnd.random() < 0.8]
                extra = fuzz_items(rnd.randrange(0, 300), seed ^ 0x55, tsmode)
                theirs += [it for it in extra if it not in ours]
                msgs = conversation(harness, ours, theirs, LIMITS[fsl_i], role == 1)
                data = bytes([role | fsl_i << 1 | tsmode << 3, n, seed])
                for m in msgs:
                    b = bytes.fromhex(m)
                    data += len(b).to_bytes(2, "big") + b
                with open(os.path.join(outdir, f"seed-{count:03d}"), "wb") as f:
                    f.write(data)
                count += 1
    print(f"{count} seeds in {outdir}")


if __name__ == "__main__":
    main()
