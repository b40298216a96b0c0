"""Shared helpers for bench/*.py: start celld, find LXD, print side by side."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("CELL_BUILD_DIR", os.path.join(ROOT, "build"))
LXD_SOCKET = os.environ.get("LXD_SOCKET", "/var/lib/lxd/unix.socket")


def connectable(path):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def http_get_ok(path, url="/1.0"):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.settimeout(2)
        s.connect(path)
        s.sendall(b"GET " + url.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return s.recv(12).startswith(b"HTTP/1.1 200")
    except OSError:
        return False
    finally:
        s.close()


class Celld:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="cell-bench-")
        self.sock = os.path.join(self.dir, "unix.socket")
        self.proc = None

    def start(self):
        env = dict(os.environ, CELL_DIR=self.dir)
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([os.path.join(BUILD, "celld")], env=env)
        while not http_get_ok(self.sock):
            if self.proc.poll() is not None:
                raise SystemExit("celld exited %d" % self.proc.returncode)
            time.sleep(0.0005)
        return time.perf_counter() - t0

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        shutil.rmtree(self.dir, ignore_errors=True)


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def lxd_pid():
    """LXD's pid when its socket answers (we only read it, never signal it)."""
    if not connectable(LXD_SOCKET):
        return None
    out = subprocess.run(["pidof", "lxd"], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None


def http_load(sock, path, conns, seconds):
    out = subprocess.run([os.path.join(BUILD, "bench_http_load"), sock, path, str(conns),
                          str(seconds)], capture_output=True, text=True)
    return json.loads(out.stdout) if out.stdout.strip() else None


def report(rows):
    """rows: (metric, celld, lxd_or_None, unit, target, lower_is_better)."""
    print("%-44s %12s %12s %8s  %s" % ("metric", "celld", "LXD", "ratio", "target"))
    for metric, ours, theirs, unit, target, lower in rows:
        ratio = ""
        if theirs:
            r = (theirs / ours) if lower else (ours / theirs)
            ratio = "%.1fx" % r
        fmt = lambda v: "-" if v is None else ("%.1f %s" % (v, unit)).strip()
        print("%-44s %12s %12s %8s  %s" % (metric, fmt(ours), fmt(theirs) if theirs else
                                            "not running", ratio, target))
    sys.stdout.flush()
