#!/usr/bin/env python3
"""Resident memory of a set of processes, split the way RSS hides it.

usage: mem_footprint.py PID...

Per process: RssAnon (heap, arenas, touched stacks: the process's own) and
RssFile (mapped pages of the binary and its shared libraries, mostly clean
and shared with every other process that maps the same library). Then the
sum of VmRSS, which counts a library page once per process, and the number
of distinct physical pages behind all of them together, which counts it
once. The distinct count reads /proc/PID/pagemap, whose page frame numbers
only root can see; otherwise it prints "n/a".
"""
import struct
import sys

PFN_MASK = (1 << 55) - 1


def status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[k] = int(v.split()[0])
    return out


def frames(pid):
    """Physical frames mapped by pid, or None when the kernel hides them."""
    seen, hidden = set(), False
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pm:
        for line in maps:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo >= 0xFFFFFFFFFF600000:  # vsyscall
                continue
            pm.seek(lo // 4096 * 8)
            for (v,) in struct.iter_unpack("<Q", pm.read((hi - lo) // 4096 * 8)):
                if v >> 63 & 1:
                    pfn = v & PFN_MASK
                    if pfn == 0:
                        hidden = True
                    seen.add(pfn)
    return None if hidden else seen


def main(pids):
    total = 0
    parts = []
    union = set()
    for pid in pids:
        s = status(pid)
        total += s["VmRSS"]
        with open(f"/proc/{pid}/comm") as f:
            name = f.read().strip()
        parts.append(f"{name} anon {s['RssAnon']} + file {s['RssFile']}")
        if union is not None:
            fr = frames(pid)
            union = None if fr is None else union | fr
    distinct = "n/a (needs root)" if union is None else f"{len(union) * 4} kB"
    print(f"{'; '.join(parts)} kB; sum of VmRSS {total} kB; distinct pages {distinct}")


if __name__ == "__main__":
    main(sys.argv[1:])
