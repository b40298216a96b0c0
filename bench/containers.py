#!/usr/bin/python3
"""Containers issue targets, the same REST workload against celld and (when
its socket answers) LXD, with a busybox image built at run time:

  launch (create + start) median on dir and on btrfs (loop file),
  stop --force and delete medians, GET /1.0/instances?recursion=2 with 50
  running containers, resident memory with 100 running.

Timings are wall clock around the API calls, operation waits included.
Ratio > 1 means celld is better.
"""
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid

from common import BUILD, LXD_SOCKET, ROOT, Celld, http_load, lxd_pid, report, rss_kb

sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import images_fixture  # noqa: E402  (the busybox image builder shared with the tests)

LAUNCHES = int(os.environ.get("BENCH_LAUNCHES", "20"))
LIST_RUNNING = 50
RSS_RUNNING = 100


class Unix(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=120)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(120)
        self.sock.connect(self.path)


class Api:
    def __init__(self, sock):
        self.sock = sock

    def req(self, method, path, body=None, headers=None, raw=False):
        c = Unix(self.sock)
        try:
            hdrs = dict(headers or {})
            if body is not None and not isinstance(body, bytes):
                body = json.dumps(body)
                hdrs["Content-Type"] = "application/json"
            c.request(method, path, body=body, headers=hdrs)
            r = c.getresponse()
            data = r.read()
            if raw:   # timing: the client's JSON decoding is not the server's time
                return r.status, data
            return r.status, json.loads(data) if data else None
        finally:
            c.close()

    def wait(self, status_body):
        status, body = status_body
        if status != 202:
            raise RuntimeError("expected an operation: %d %s" % (status, body))
        _, op = self.req("GET", body["operation"] + "/wait?timeout=120")
        if op["metadata"]["status"] != "Success":
            raise RuntimeError(op["metadata"]["err"])
        return op["metadata"]

    def create(self, name, alias, pool=None):
        body = {"name": name, "source": {"type": "image", "alias": alias}}
        if pool:
            body["devices"] = {"root": {"type": "disk", "path": "/", "pool": pool}}
        return self.wait(self.req("POST", "/1.0/instances", body))

    def state(self, name, action, **kw):
        return self.wait(self.req("PUT", "/1.0/instances/%s/state" % name,
                                  dict(kw, action=action)))

    def delete(self, name):
        return self.wait(self.req("DELETE", "/1.0/instances/" + name))


def import_image(api, alias):
    """The busybox image under `alias`; its fingerprint when this call added it."""
    path, fp = images_fixture.build_image("/tmp")
    added = None
    if api.req("GET", "/1.0/images/" + fp)[0] != 200:
        with open(path, "rb") as f:
            api.wait(api.req("POST", "/1.0/images", f.read(),
                             {"Content-Type": "application/octet-stream"}))
        added = fp
    if api.req("GET", "/1.0/images/aliases/" + alias)[0] != 200:
        api.req("POST", "/1.0/images/aliases", {"name": alias, "target": fp})
    return added


def ms(f):
    t0 = time.perf_counter()
    f()
    return (time.perf_counter() - t0) * 1000


class Run:
    """One daemon's share of the workload; every container it makes is removed."""

    def __init__(self, api, prefix, alias):
        self.api, self.prefix, self.alias = api, prefix, alias
        self.made = []
        self.list_method = None

    def name(self):
        n = "%s-%s" % (self.prefix, uuid.uuid4().hex[:8])
        self.made.append(n)
        return n

    def launch(self, pool=None):
        n = self.name()
        t = ms(lambda: (self.api.create(n, self.alias, pool), self.api.state(n, "start")))
        return n, t

    def cycle(self, pool=None):

        """Median launch, stop --force and delete over LAUNCHES containers."""
        launch, stop, delete = [], [], []
        for _ in range(LAUNCHES):
            n, t = self.launch(pool)
            launch.append(t)
            stop.append(ms(lambda: self.api.state(n, "stop", force=True)))
            delete.append(ms(lambda: self.api.delete(n)))
            self.made.remove(n)
        return statistics.median(launch), statistics.median(stop), statistics.median(delete)

    def running(self, count):
        while len(self.made) < count:
            self.launch()

    def list_full(self, rounds=50):
        """Median latency: bench_http_load (C, one keep-alive connection) when
        the server's answers suit it, else a fresh connection per request with
        the body read but not decoded (LXD's chunked answers)."""
        path = "/1.0/instances?recursion=2"
        st, body = self.api.req("GET", path)
        running = sum(1 for i in body["metadata"] if i["status"] == "Running")
        if running < LIST_RUNNING:
            raise RuntimeError("only %d running" % running)
        r = http_load(self.api.sock, path, 1, 3)
        if r and r["requests"] > 10 and not r["failed"]:
            self.list_method = "bench_http_load p50"
            return r["p50_us"] / 1000
        self.list_method = "python, median of %d" % rounds
        return statistics.median(ms(lambda: self.api.req("GET", path, raw=True))
                                 for _ in range(rounds))

    def cleanup(self):
        for n in list(self.made):
            try:
                st, body = self.api.req("PUT", "/1.0/instances/%s/state" % n,
                                        {"action": "stop", "force": True})
                if st == 202:
                    self.api.wait((st, body))
                self.api.wait(self.api.req("DELETE", "/1.0/instances/" + n))
            except Exception as e:   # keep cleaning the others
                print("cleanup %s: %s" % (n, e), file=sys.stderr)
        self.made = []


def stop_celld(c):
    """Stop celld, then leave nothing: containers, mounts, loop devices, dir."""
    if c.proc and c.proc.poll() is None:
        c.proc.terminate()
        c.proc.wait(20)
    images_fixture.kill_containers(c.dir)
    images_fixture.release_state_dir(c.dir)


def btrfs_pool(api):
    name = "bench-bt-" + uuid.uuid4().hex[:6]
    st, body = api.req("POST", "/1.0/storage-pools", {"name": name, "driver": "btrfs",
                                                      "config": {"size": "4GiB"}})
    if st == 202:
        api.wait((st, body))
    elif st not in (200, 201):
        return None
    return name


def bench_celld():
    c = Celld()
    c.start()
    api = Api(c.sock)
    res = {}
    run = Run(api, "bench", "busybox")
    pool = None
    try:
        import_image(api, "busybox")
        run.launch()   # warm the image cache on the pool
        run.cleanup()
        res["launch"], res["stop"], res["delete"] = run.cycle()
        pool = btrfs_pool(api)
        if pool:
            run.launch(pool)
            run.cleanup()
            res["launch_btrfs"] = run.cycle(pool)[0]
        run.running(LIST_RUNNING)
        res["list"] = run.list_full()
        res["list_method"] = run.list_method
        run.running(RSS_RUNNING)
        time.sleep(1)
        res["rss"] = rss_kb(c.proc.pid) / 1024
    finally:
        run.cleanup()
        if pool:
            st, body = api.req("DELETE", "/1.0/storage-pools/" + pool)
            if st == 202:
                api.wait((st, body))
        stop_celld(c)
    return res


def bench_lxd():
    pid = lxd_pid()
    if not pid:
        return None
    api = Api(LXD_SOCKET)
    alias = "cell-bench-busybox"
    run = Run(api, "cellbench", alias)
    res = {}
    added = None
    try:
        added = import_image(api, alias)
        run.launch()
        run.cleanup()
        res["launch"], res["stop"], res["delete"] = run.cycle()
        run.running(LIST_RUNNING)
        res["list"] = run.list_full()
        res["list_method"] = run.list_method
        run.running(RSS_RUNNING)
        time.sleep(1)
        res["rss"] = rss_kb(pid) / 1024
    finally:
        run.cleanup()
        if added:   # leave LXD's image store as we found it
            st, body = api.req("DELETE", "/1.0/images/" + added)
            if st == 202:
                api.wait((st, body))
    return res


def main():
    if not os.path.exists(os.path.join(BUILD, "celld")):
        raise SystemExit("build celld first (bench/run.sh)")
    ours = bench_celld()
    theirs = bench_lxd() or {}
    g = theirs.get
    report([
        ("launch busybox on dir (ms, median of %d)" % LAUNCHES, ours["launch"], g("launch"),
         "ms", "< 60 ms (LXD ~125)", True),
        ("launch busybox on btrfs (ms, median)", ours.get("launch_btrfs"), None, "ms",
         "< 40 ms", True),
        ("stop --force (ms, median)", ours["stop"], g("stop"), "ms", "< 60 ms (LXD ~600)", True),
        ("delete stopped (ms, median)", ours["delete"], g("delete"), "ms", "< 15 ms", True),
        ("GET instances?recursion=2, %d running (ms)" % LIST_RUNNING, ours["list"], g("list"),
         "ms", "< 5 ms (LXD ~90)", True),
        ("resident memory, %d running (MB)" % RSS_RUNNING, ours["rss"], g("rss"), "MB",
         "< 20 MB (LXD 110-200)", True),
    ])
    print("list timing: celld %s%s" % (ours["list_method"], "; LXD " + g("list_method")
                                       if g("list_method") else ""))


if __name__ == "__main__":
    main()
