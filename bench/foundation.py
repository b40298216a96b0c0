#!/usr/bin/python3
"""Issue 2 targets: GET /1.0 throughput and p99, idle memory, cold start.

Runs the same workload against celld and, when its socket answers, LXD.
Ratio > 1 means celld is better.
"""
import statistics
import time

from common import Celld, http_load, lxd_pid, report, rss_kb, LXD_SOCKET

SECONDS = 5


def main():
    starts = []
    for _ in range(5):
        c = Celld()
        starts.append(c.start() * 1000)
        c.stop()
    c = Celld()
    c.start()
    try:
        time.sleep(1)
        idle = rss_kb(c.proc.pid) / 1024
        ours = http_load(c.sock, "/1.0", 4, SECONDS)
    finally:
        c.stop()
    theirs, lxd_rss = None, None
    pid = lxd_pid()
    if pid:
        lxd_rss = rss_kb(pid) / 1024
        theirs = http_load(LXD_SOCKET, "/1.0", 4, SECONDS)
    report([
        ("GET /1.0, 4 keep-alive conns (req/s)", ours["rps"], theirs and theirs["rps"], "",
         ">= 40000", False),
        ("GET /1.0 p99 latency (ms)", ours["p99_us"] / 1000, theirs and theirs["p99_us"] / 1000,
         "ms", "< 1 ms", True),
        ("idle resident memory (MB)", idle, lxd_rss, "MB", "< 8 MB", True),
        ("cold start to serving, empty dir (ms, median of 5)", statistics.median(starts), None,
         "ms", "< 50 ms", True),
    ])


if __name__ == "__main__":
    main()
