#!/usr/bin/python3
"""Exec and file transfer targets, through the command-line clients, against
celld (`cell`) and, when its socket answers, LXD (`lxc`):

  `exec c1 -- true` round trip, median of 50 (target < 8 ms);
  exec stdout throughput: `cat` of a 1 GiB sparse file inside, to /dev/null
  (target >= 1 GB/s);
  file push and pull of a 1 GiB file, next to a local `cp` of the same file
  (target: at least 80% of cp's speed).

Times are wall clock around the client process, median of BENCH_XFER_RUNS
(3) for the 1 GiB runs; destinations are removed between runs, outside the
timing, for cp as well.  Ratio > 1 means celld is better.

BENCH_PARTS=exec (or files) runs only that half; both by default.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from common import BUILD, LXD_SOCKET, ROOT, Celld, connectable, report

sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import images_fixture  # noqa: E402  (the busybox image shared with the tests)

EXEC_RUNS = int(os.environ.get("BENCH_EXEC_RUNS", "50"))
XFER_RUNS = int(os.environ.get("BENCH_XFER_RUNS", "3"))
PARTS = os.environ.get("BENCH_PARTS", "exec,files").split(",")
GIB = 1 << 30


class Client:
    """One CLI (cell or lxc) bound to one daemon, and the container it made."""

    def __init__(self, argv0, env, tag):
        self.argv0, self.env, self.tag = argv0, env, tag
        self.name = None
        self.alias = "bench-bb-" + uuid.uuid4().hex[:6]

    def run(self, *args, check=True, **kw):
        kw.setdefault("capture_output", True)
        p = subprocess.run([self.argv0] + list(args), env=self.env, **kw)
        if check and p.returncode != 0:
            raise RuntimeError("%s %s: %s" % (self.tag, " ".join(args), p.stderr.decode(errors="replace")))
        return p

    def setup(self):
        path, _ = images_fixture.build_image(tempfile.gettempdir())
        self.run("image", "import", path, "--alias", self.alias)
        self.name = "bench-x-" + uuid.uuid4().hex[:8]
        self.run("launch", self.alias, self.name)

    def cleanup(self):
        if self.name:
            self.run("delete", "-f", self.name, check=False)
        self.run("image", "delete", self.alias, check=False)


def timed(f):
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def exec_true_ms(c):
    c.run("exec", c.name, "--", "true")   # warm
    return statistics.median(timed(lambda: c.run("exec", c.name, "--", "true")) * 1000
                             for _ in range(EXEC_RUNS))


def exec_throughput(c):
    """GB/s of `cat` of a sparse 1 GiB file inside, to our /dev/null."""
    c.run("exec", c.name, "--", "dd", "if=/dev/zero", "of=/root/sparse", "bs=1", "count=0",
          "seek=%d" % GIB)

    def once():
        with open(os.devnull, "wb") as null:
            c.run("exec", c.name, "--", "cat", "/root/sparse", stdout=null, capture_output=False)
    return statistics.median(GIB / timed(once) / 1e9 for _ in range(XFER_RUNS))


def median_time(action, reset):
    """Each run starts with no dirty pages left by the one before: writeback
    of an earlier copy would otherwise land on whichever run comes next."""
    times = []
    for _ in range(XFER_RUNS):
        reset()
        os.sync()
        times.append(timed(action))
    return statistics.median(times)


def transfers(c, src, work):
    """(push seconds, pull seconds) for the 1 GiB file."""
    dest = "%s/root/big" % c.name
    back = os.path.join(work, "back-" + c.tag)
    push = median_time(lambda: c.run("file", "push", "-q", src, dest),
                       lambda: c.run("file", "delete", dest, check=False))
    pull = median_time(lambda: c.run("file", "pull", "-q", dest, back),
                       lambda: os.path.exists(back) and os.unlink(back))
    c.run("file", "delete", dest, check=False)
    if os.path.exists(back):
        os.unlink(back)
    return push, pull


def local_cp(src, work):
    dst = os.path.join(work, "cp-copy")
    t = median_time(lambda: subprocess.run(["cp", src, dst], check=True),
                    lambda: os.path.exists(dst) and os.unlink(dst))
    os.unlink(dst)
    return t


def measure(c, src, work):
    c.setup()
    try:
        res = {"exec_ms": None, "gbps": None, "push": None, "pull": None}
        if "exec" in PARTS:
            res["exec_ms"], res["gbps"] = exec_true_ms(c), exec_throughput(c)
        if "files" in PARTS:
            res["push"], res["pull"] = transfers(c, src, work)
        return res
    finally:
        c.cleanup()


def lxd_client():
    if not connectable(LXD_SOCKET) or not shutil.which("lxc"):
        return None
    env = dict(os.environ, LXD_DIR=os.path.dirname(LXD_SOCKET))
    return Client("lxc", env, "lxd")


def main():
    work = tempfile.mkdtemp(prefix="cell-bench-xfer-", dir=os.environ.get("BENCH_DIR", "/tmp"))
    src = os.path.join(work, "one-gib")
    if "files" in PARTS:
        with open(src, "wb") as f:   # real data: a sparse source would flatter everyone
            for _ in range(GIB >> 20):
                f.write(os.urandom(1 << 20))
    d = Celld()
    d.start()
    try:
        env = dict(os.environ, CELL_DIR=d.dir, CELL_CONF=os.path.join(d.dir, "client"))
        ours = measure(Client(os.path.join(BUILD, "cell"), env, "celld"), src, work)
        cp = local_cp(src, work) if "files" in PARTS else None
    finally:
        d.stop()
    theirs = None
    lxc = lxd_client()
    if lxc:
        try:
            theirs = measure(lxc, src, work)
        except RuntimeError as e:
            print("LXD: %s" % e)
    shutil.rmtree(work, ignore_errors=True)
    t = lambda k: theirs and theirs[k]
    pct = lambda s: 100.0 * cp / s
    rows = []
    if "exec" in PARTS:
        rows += [
            ("exec c1 -- true, median of %d (ms)" % EXEC_RUNS, ours["exec_ms"], t("exec_ms"), "ms", "< 8 ms",
             True),
            ("exec stdout: cat 1 GiB sparse > /dev/null (GB/s)", ours["gbps"], t("gbps"), "GB/s", ">= 1 GB/s",
             False),
        ]
    if "files" not in PARTS:
        return report(rows)
    report(rows + [
        ("file push 1 GiB (s)", ours["push"], t("push"), "s", "", True),
        ("file pull 1 GiB (s)", ours["pull"], t("pull"), "s", "", True),
        ("local cp of the same file (s)", cp, None, "s", "", True),
        ("file push speed as % of cp", pct(ours["push"]), theirs and pct(theirs["push"]), "%", ">= 80%", False),
        ("file pull speed as % of cp", pct(ours["pull"]), theirs and pct(theirs["pull"]), "%", ">= 80%", False),
    ])


if __name__ == "__main__":
    main()
