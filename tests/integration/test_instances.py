"""/1.0/instances end to end on real busybox containers: create (image, none,
copy, generated names), list (recursion 0/1/2, ?filter=, /1.0/containers),
get/put/patch with ETags, rename, delete, bad input that changes nothing,
volatile keys, id maps (unprivileged, isolated, privileged), live limits,
hot-plugged disks and nics, unix-char devices, profile propagation, logs,
lifecycle events, and the same on a btrfs pool (loop file)."""
import json
import os
import subprocess
import time

import pytest

import images_fixture as fx
from images_fixture import create_busybox, state, unique, wait


def get(celld, name):
    r = celld.get("/1.0/instances/" + name)
    assert r.status == 200, r
    return r.metadata


def names(celld):
    r = celld.get("/1.0/instances")
    assert r.status == 200, r
    return sorted(u.rsplit("/", 1)[1] for u in r.metadata)


def nothing_left(celld, name, pool="default"):
    """No row, no volume, no snapshots, no lxc dir for `name`."""
    assert celld.get("/1.0/instances/" + name).status == 404
    for rel in ("storage-pools/%s/containers/%s" % (pool, name),
                "storage-pools/%s/containers-snapshots/%s" % (pool, name),
                "containers/%s" % name):
        assert not os.path.exists(os.path.join(celld.dir, rel)), rel


def cgroup_file(name, ctrl, fname):
    for base in ("/sys/fs/cgroup/%s" % ctrl, "/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        hits = [d for d in os.listdir(base) if d.startswith("cell.") and
                d.endswith(".payload." + name)] if os.path.isdir(base) else []
        for h in hits:
            p = os.path.join(base, h, fname)
            if os.path.exists(p):
                with open(p) as f:
                    return f.read().strip()
    return None


# ---- create, list, get, delete ------------------------------------------------------------------

def test_lifecycle_from_image(celld):
    if not fx.images_api(celld):
        pytest.skip("no images API in this build")
    fp = fx.import_busybox(celld)
    name = unique("img")
    create_busybox(celld, name)
    inst = get(celld, name)
    assert inst["status"] == "Stopped" and inst["status_code"] == 102
    assert inst["type"] == "container" and inst["profiles"] == ["default"]
    assert inst["architecture"] == "x86_64" and inst["location"] == "none"
    cfg = inst["config"]
    assert cfg["volatile.base_image"] == fp
    assert cfg["image.os"] == "busybox"
    assert cfg["volatile.last_state.power"] == "STOPPED"
    assert json.loads(cfg["volatile.idmap.next"]) == json.loads(cfg["volatile.last_state.idmap"])
    assert cfg["volatile.idmap.base"] == str(json.loads(cfg["volatile.idmap.next"])[0]["Hostid"])
    assert inst["expanded_devices"]["root"] == {"type": "disk", "path": "/", "pool": "default"}

    state(celld, name, "start")
    inst = get(celld, name)
    assert inst["status"] == "Running" and inst["status_code"] == 103
    assert inst["config"]["volatile.last_state.power"] == "RUNNING"
    assert "volatile.idmap.current" in inst["config"]
    assert inst["last_used_at"] != "0001-01-01T00:00:00Z"
    st = celld.get("/1.0/instances/%s/state" % name).metadata
    assert st["pid"] > 0 and st["processes"] >= 1
    assert st["cpu"]["usage"] > 0 and st["memory"]["usage"] > 0
    assert "lo" in st["network"]
    out = fx.attach(celld, name, "/bin/cat", "/proc/self/uid_map").stdout.split()
    assert out[:2] == ["0", cfg["volatile.idmap.base"]]   # unprivileged by default

    r = celld.request("DELETE", "/1.0/instances/" + name)
    assert r.status == 400 and "running" in r.json["error"].lower()
    state(celld, name, "stop", force=True)
    assert get(celld, name)["config"]["volatile.last_state.power"] == "STOPPED"
    wait(celld, celld.request("DELETE", "/1.0/instances/" + name))
    nothing_left(celld, name)


def test_create_none_and_generated_name(celld):
    r = celld.request("POST", "/1.0/instances", {"source": {"type": "none"}})
    op = wait(celld, r)
    url = op["resources"]["instances"][0]
    name = url.rsplit("/", 1)[1]
    assert op["resources"]["containers"] == ["/1.0/containers/" + name]
    assert len(name) <= 63 and name[0].isalpha() and "-" in name
    assert names(celld) == [name]
    rootfs = os.path.join(celld.dir, "storage-pools/default/containers", name, "rootfs")
    assert os.listdir(rootfs) == []
    assert os.stat(rootfs).st_uid == fx.map_root(celld, name)


def test_list_recursion_filter_and_containers_path(celld):
    a, b = unique("la"), unique("lb")
    create_busybox(celld, a, start=True)
    create_busybox(celld, b, config={"user.tag": "x y"})
    r = celld.get("/1.0/instances")
    assert sorted(r.metadata) == sorted(["/1.0/instances/" + a, "/1.0/instances/" + b])
    r = celld.get("/1.0/containers")
    assert sorted(r.metadata) == sorted(["/1.0/containers/" + a, "/1.0/containers/" + b])
    objs = {o["name"]: o for o in celld.get("/1.0/instances?recursion=1").metadata}
    assert objs[a]["status"] == "Running" and objs[b]["status"] == "Stopped"
    assert "state" not in objs[a]
    full = {o["name"]: o for o in celld.get("/1.0/instances?recursion=2").metadata}
    assert full[a]["state"]["status"] == "Running" and full[a]["state"]["pid"] > 0
    assert full[b]["state"]["status"] == "Stopped"
    assert full[a]["snapshots"] is None or full[a]["snapshots"] == []

    def flt(expr, rec=0):
        from urllib.parse import quote
        r = celld.get("/1.0/instances?recursion=%d&filter=%s" % (rec, quote(expr)))
        assert r.status == 200, r
        return sorted(x if isinstance(x, str) else x["name"] for x in r.metadata)

    assert flt("status eq Running") == ["/1.0/instances/" + a]
    assert flt("status eq Stopped", 1) == [b]
    assert flt("name eq %s or name eq %s" % (a, b), 1) == sorted([a, b])
    assert flt('config.user.tag eq "x y"', 1) == [b]
    assert flt("not status eq Running", 1) == [b]
    assert celld.get("/1.0/instances?filter=status%20bogus").status == 400
    state(celld, a, "stop", force=True)


def test_copy_with_and_without_snapshots(celld):
    src = unique("src")
    create_busybox(celld, src)
    wait(celld, celld.request("POST", "/1.0/instances/%s/snapshots" % src, {"name": "s0"}))
    fx.attach  # (no exec needed: a file marks the rootfs)
    with open(os.path.join(fx.rootfs_path(celld, src), "root", "mark"), "w") as f:
        f.write("one")
    wait(celld, celld.request("POST", "/1.0/instances/%s/snapshots" % src, {"name": "s1"}))

    full, only, fromsnap = unique("cp"), unique("cpo"), unique("cps")
    wait(celld, celld.request("POST", "/1.0/instances", {
        "name": full, "source": {"type": "copy", "source": src}}))
    wait(celld, celld.request("POST", "/1.0/instances", {
        "name": only, "source": {"type": "copy", "source": src, "instance_only": True}}))
    wait(celld, celld.request("POST", "/1.0/instances", {
        "name": fromsnap, "source": {"type": "copy", "source": src + "/s0"}}))
    snaps = celld.get("/1.0/instances/%s/snapshots" % full).metadata
    assert sorted(s.rsplit("/", 1)[1] for s in snaps) == ["s0", "s1"]
    assert celld.get("/1.0/instances/%s/snapshots" % only).metadata == []
    assert celld.get("/1.0/instances/%s/snapshots" % fromsnap).metadata == []
    assert os.path.exists(os.path.join(fx.rootfs_path(celld, full), "root", "mark"))
    assert not os.path.exists(os.path.join(fx.rootfs_path(celld, fromsnap), "root", "mark"))
    c = get(celld, full)["config"]
    assert c["volatile.uuid"] != get(celld, src)["config"]["volatile.uuid"]
    for n in (full, only, fromsnap):
        state(celld, n, "start")
        state(celld, n, "stop", force=True)


# ---- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["1abc", "-abc", "abc-", "a_b", "a.b", "a b", "x" * 64, "ä"])
def test_invalid_names(celld, bad):
    r = celld.request("POST", "/1.0/instances", {"name": bad, "source": {"type": "none"}})
    assert r.status == 400, r
    assert names(celld) == []


def test_bad_requests_change_nothing(celld):
    ok = unique("ok")
    create_busybox(celld, ok)
    before = sorted(os.listdir(os.path.join(celld.dir, "storage-pools/default/containers")))
    host_dir = os.path.join(celld.dir, "share-src")
    os.makedirs(host_dir)
    n = unique("bad")
    cases = [
        ({"name": ok, "source": {"type": "none"}}, 409),
        ({"name": n, "source": {"type": "image", "alias": "no-such-image"}}, 404),
        ({"name": n, "source": {"type": "image", "fingerprint": "ffff"}}, 404),
        ({"name": n, "source": {"type": "bogus"}}, 400),
        ({"name": n, "source": {"type": "none"}, "type": "virtual-machine"}, 400),
        ({"name": n, "source": {"type": "copy", "source": "nosuch"}}, 404),
        ({"name": n, "source": {"type": "none"}, "profiles": ["nosuch"]}, 404),
        ({"name": n, "source": {"type": "none"}, "config": {"limits.memory": "lots"}}, 400),
        ({"name": n, "source": {"type": "none"}, "config": {"boot.autostart": "maybe"}}, 400),
        ({"name": n, "source": {"type": "none"}, "config": {"no.such.key": "1"}}, 400),
        ({"name": n, "source": {"type": "none"}, "config": {"limits.cpu": "100000"}}, 400),
        ({"name": n, "source": {"type": "none"}, "config": {"limits.cpu": "0-99999"}}, 400),
        ({"name": n, "source": {"type": "none"}, "config": {"limits.processes": "0"}}, 400),
        ({"name": n, "source": {"type": "none"}, "config": {"user.x": 5}}, 400),
        ({"name": n, "source": {"type": "none"}, "devices": {
            "d": {"type": "disk", "source": host_dir, "path": "/../../etc"}}}, 400),
        ({"name": n, "source": {"type": "none"}, "devices": {
            "d": {"type": "disk", "source": host_dir, "path": "relative"}}}, 400),
        ({"name": n, "source": {"type": "none"}, "devices": {
            "d": {"type": "disk", "source": "/no/such/dir", "path": "/mnt"}}}, 400),
        ({"name": n, "source": {"type": "none"}, "devices": {
            "d": {"type": "unix-char", "source": "/dev/no-such-node"}}}, 400),
        ({"name": n, "source": {"type": "none"}, "devices": {"d": {"type": "gpu"}}}, 400),
        ({"name": n, "source": {"type": "none"}, "devices": {
            "root": {"type": "disk", "path": "/", "pool": "nosuchpool"}}}, 404),
        ({"name": n, "source": {"type": "none"}, "profiles": []}, 400),   # no root disk
    ]
    for body, status in cases:
        r = celld.request("POST", "/1.0/instances", body)
        assert r.status == status, (body, r)
        assert r.json["type"] == "error" and r.json["error"], r
    assert celld.request("POST", "/1.0/instances", body="{not json").status == 400
    assert names(celld) == [ok]
    after = sorted(os.listdir(os.path.join(celld.dir, "storage-pools/default/containers")))
    assert after == before
    assert not os.path.exists(os.path.join(celld.dir, "containers", n))


def test_failed_create_leaves_nothing(celld):
    if not fx.images_api(celld):
        pytest.skip("no images API in this build")
    fp = fx.import_busybox(celld)
    # Break the stored image behind the store's back: the unpack fails in
    # the operation, after the row exists.
    path = os.path.join(celld.dir, "images", fp)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    pooldir = os.path.join(celld.dir, "storage-pools/default/images", fp)
    subprocess.run(["rm", "-rf", pooldir])
    name = unique("broken")
    r = celld.request("POST", "/1.0/instances", {"name": name,
                                                 "source": {"type": "image", "fingerprint": fp}})
    op = wait(celld, r, ok=False)
    assert op["status"] == "Failure" and op["err"], op
    nothing_left(celld, name)
    tmp = os.path.join(celld.dir, "storage-pools/default/.tmp")
    assert not os.path.isdir(tmp) or os.listdir(tmp) == []


# ---- update, etag, rename -----------------------------------------------------------------------

def test_put_patch_etag_and_volatile(celld):
    name = unique("upd")
    create_busybox(celld, name)
    r = celld.get("/1.0/instances/" + name)
    etag = r.headers["etag"]
    inst = r.metadata
    cfg = dict(inst["config"])
    cfg["user.a"] = "1"
    body = {"config": cfg, "devices": {}, "profiles": ["default"], "description": "d1",
            "architecture": inst["architecture"], "ephemeral": False}
    wait(celld, celld.request("PUT", "/1.0/instances/" + name, body, headers={"If-Match": etag}))
    assert celld.request("PUT", "/1.0/instances/" + name, body,
                         headers={"If-Match": etag}).status == 412
    wait(celld, celld.request("PATCH", "/1.0/instances/" + name, {"config": {"user.b": "2"}}))
    inst = get(celld, name)
    assert inst["config"]["user.a"] == "1" and inst["config"]["user.b"] == "2"
    assert inst["description"] == "d1"
    # PUT without the volatile keys keeps what describes the rootfs.
    wait(celld, celld.request("PUT", "/1.0/instances/" + name, {"config": {"user.c": "3"},
                                                                "profiles": ["default"]}))
    c = get(celld, name)["config"]
    assert "user.a" not in c and c["user.c"] == "3"
    for k in ("volatile.idmap.next", "volatile.last_state.idmap", "volatile.idmap.base",
              "volatile.uuid"):
        assert k in c, k
    # Bad updates are 400s before any operation, and change nothing.
    for bad in ({"config": {"nope": "1"}}, {"config": {"limits.memory": "x"}},
                {"devices": {"d": {"type": "disk", "source": "/nonexistent", "path": "/m"}}},
                {"profiles": ["nosuch"]}):
        r = celld.request("PATCH", "/1.0/instances/" + name, bad)
        assert r.status in (400, 404), (bad, r)
    assert get(celld, name)["config"] == c
    # "" unsets.
    wait(celld, celld.request("PATCH", "/1.0/instances/" + name, {"config": {"user.c": ""}}))
    assert "user.c" not in get(celld, name)["config"]


def test_rename(celld):
    a, b, c = unique("ra"), unique("rb"), unique("rc")
    create_busybox(celld, a)
    create_busybox(celld, b)
    wait(celld, celld.request("POST", "/1.0/instances/%s/snapshots" % a, {"name": "s"}))
    assert celld.request("POST", "/1.0/instances/" + a, {"name": b}).status == 409
    assert celld.request("POST", "/1.0/instances/" + a, {"name": "9bad"}).status == 400
    wait(celld, celld.request("POST", "/1.0/instances/" + a, {"name": c}))
    assert names(celld) == sorted([b, c])
    assert celld.get("/1.0/instances/%s/snapshots/s" % c).status == 200
    nothing_left(celld, a)
    state(celld, c, "start")
    r = celld.request("POST", "/1.0/instances/" + c, {"name": a})
    assert r.status == 400, r
    state(celld, c, "stop", force=True)


def test_protection_delete(celld):
    name = unique("prot")
    create_busybox(celld, name, config={"security.protection.delete": "true"})
    r = celld.request("DELETE", "/1.0/instances/" + name)
    assert r.status == 400, r
    wait(celld, celld.request("PATCH", "/1.0/instances/" + name,
                              {"config": {"security.protection.delete": "false"}}))
    wait(celld, celld.request("DELETE", "/1.0/instances/" + name))


# ---- id maps -------------------------------------------------------------------------------------

def uid_map(celld, name):
    pid = celld.get("/1.0/instances/%s/state" % name).metadata["pid"]
    with open("/proc/%d/uid_map" % pid) as f:
        return [l.split() for l in f.read().strip().splitlines()]


def test_privileged_isolated_and_shift(celld):
    a, b, p = unique("iso"), unique("iso"), unique("priv")
    create_busybox(celld, a, config={"security.idmap.isolated": "true"})
    create_busybox(celld, b, config={"security.idmap.isolated": "true"})
    create_busybox(celld, p, config={"security.privileged": "true"})
    for n in (a, b, p):
        state(celld, n, "start")
    ma, mb = uid_map(celld, a), uid_map(celld, b)
    assert ma[0][2] == "65536" and mb[0][2] == "65536"
    ra = range(int(ma[0][1]), int(ma[0][1]) + 65536)
    assert int(mb[0][1]) not in ra and int(mb[0][1]) + 65535 not in ra
    assert uid_map(celld, p) == [["0", "0", "4294967295"]]
    root = fx.rootfs_path(celld, p)
    assert os.stat(os.path.join(root, "bin")).st_uid == 0
    # Turn the privileged one unprivileged: the next start shifts the rootfs.
    state(celld, p, "stop", force=True)
    wait(celld, celld.request("PATCH", "/1.0/instances/" + p,
                              {"config": {"security.privileged": "false"}}))
    state(celld, p, "start")
    base = int(get(celld, p)["config"]["volatile.idmap.base"])
    assert base > 0 and uid_map(celld, p)[0][1] == str(base)
    assert os.stat(os.path.join(root, "bin")).st_uid == base
    for n in (a, b, p):
        state(celld, n, "stop", force=True)


# ---- limits, devices, profiles -------------------------------------------------------------------

def test_limits_apply_at_start_and_live(celld):
    name = unique("lim")
    create_busybox(celld, name, config={"limits.memory": "128MiB", "limits.processes": "50"})
    state(celld, name, "start")
    assert cgroup_file(name, "memory", "memory.limit_in_bytes") in (str(128 << 20), None) or \
        cgroup_file(name, "memory", "memory.max") == str(128 << 20)
    assert cgroup_file(name, "pids", "pids.max") == "50"
    wait(celld, celld.request("PATCH", "/1.0/instances/" + name,
                              {"config": {"limits.memory": "64MiB", "limits.processes": "70",
                                          "limits.cpu": "1"}}))
    mem = cgroup_file(name, "memory", "memory.limit_in_bytes") or \
        cgroup_file(name, "memory", "memory.max")
    assert mem == str(64 << 20)
    assert cgroup_file(name, "pids", "pids.max") == "70"
    cpus = cgroup_file(name, "cpuset", "cpuset.cpus") or \
        cgroup_file(name, "cpuset", "cpuset.cpus.effective")
    assert cpus is not None and "," not in cpus and "-" not in cpus
    # Removing a limit goes back to unlimited.
    wait(celld, celld.request("PATCH", "/1.0/instances/" + name,
                              {"config": {"limits.processes": ""}}))
    assert cgroup_file(name, "pids", "pids.max") == "max"
    state(celld, name, "stop", force=True)


@pytest.fixture
def bridge():
    name = "cbr" + os.urandom(3).hex()
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)


def test_devices_at_start_and_hotplug(celld, bridge, tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    (share / "hello").write_text("from host\n")
    os.chmod(tmp_path, 0o755)
    os.chmod(share, 0o755)
    os.chmod(share / "hello", 0o644)
    name = unique("dev")
    create_busybox(celld, name, devices={
        "null2": {"type": "unix-char", "source": "/dev/null", "path": "/dev/null2"},
        "eth0": {"type": "nic", "nictype": "bridged", "parent": bridge, "name": "eth0"},
    })
    state(celld, name, "start")
    cfg = get(celld, name)["config"]
    assert cfg["volatile.eth0.hwaddr"].startswith("00:16:3e:")
    assert fx.attach(celld, name, "/bin/test", "-c", "/dev/null2").returncode == 0
    links = fx.attach(celld, name, "/bin/ip", "link").stdout
    assert "eth0" in links and cfg["volatile.eth0.hwaddr"] in links
    st = celld.get("/1.0/instances/%s/state" % name).metadata
    assert st["network"]["eth0"]["hwaddr"] == cfg["volatile.eth0.hwaddr"]
    assert st["network"]["eth0"]["host_name"]

    # Hot-plug a disk and a second nic, then take them out again.
    wait(celld, celld.request("PATCH", "/1.0/instances/" + name, {"devices": {
        "share": {"type": "disk", "source": str(share), "path": "/mnt/share"},
        "eth1": {"type": "nic", "nictype": "bridged", "parent": bridge, "name": "eth1"}}}))
    assert fx.attach(celld, name, "/bin/cat", "/mnt/share/hello").stdout == "from host\n"
    assert "eth1" in fx.attach(celld, name, "/bin/ip", "link").stdout
    inst = get(celld, name)
    devs = dict(inst["devices"])
    del devs["share"], devs["eth1"]
    wait(celld, celld.request("PUT", "/1.0/instances/" + name, {
        "config": inst["config"], "devices": devs, "profiles": inst["profiles"]}))
    assert fx.attach(celld, name, "/bin/cat", "/mnt/share/hello", check=False).returncode != 0
    assert "eth1" not in fx.attach(celld, name, "/bin/ip", "link").stdout
    # A device that cannot be changed live is refused with nothing changed.
    r = celld.request("PATCH", "/1.0/instances/" + name, {"devices": {
        "null3": {"type": "unix-char", "source": "/dev/zero", "path": "/dev/zero2"}}})
    assert r.status == 400, r
    assert "null3" not in get(celld, name)["devices"]
    state(celld, name, "stop", force=True)


def test_profile_changes_propagate(celld):
    prof = unique("prof")
    r = celld.request("POST", "/1.0/profiles", {"name": prof,
                                                "config": {"limits.memory": "96MiB"}})
    assert r.status in (200, 201), r
    a, b, c = unique("pa"), unique("pb"), unique("pc")
    create_busybox(celld, a, profiles=["default", prof], start=True)
    create_busybox(celld, b, profiles=["default", prof], config={"limits.memory": "80MiB"},
                   start=True)
    create_busybox(celld, c, profiles=["default", prof], start=True)
    listed = {i["name"]: i for i in celld.get("/1.0/instances?recursion=1").metadata}
    assert listed[a]["expanded_config"]["limits.memory"] == "96MiB"
    assert listed[c]["expanded_config"]["limits.memory"] == "96MiB"
    assert listed[b]["expanded_config"]["limits.memory"] == "80MiB"

    def mem(n):
        return cgroup_file(n, "memory", "memory.limit_in_bytes") or \
            cgroup_file(n, "memory", "memory.max")

    assert mem(a) == str(96 << 20) and mem(b) == str(80 << 20)
    assert get(celld, a)["expanded_config"]["limits.memory"] == "96MiB"
    ws = fx.events_socket(celld)
    try:
        r = celld.request("PUT", "/1.0/profiles/" + prof, {"config": {"limits.memory": "112MiB"},
                                                          "devices": {}})
        assert r.status in (200, 202), r
        if r.status == 202:
            wait(celld, r)
        evs = fx.collect_events(ws, lambda e: "instance-updated" in fx.actions(
            e, "/1.0/instances/" + a))
    finally:
        ws.close()
    assert "instance-updated" in fx.actions(evs, "/1.0/instances/" + a)
    deadline = time.time() + 5
    while mem(a) != str(112 << 20) and time.time() < deadline:
        time.sleep(0.05)
    assert mem(a) == str(112 << 20)
    while mem(c) != str(112 << 20) and time.time() < deadline:
        time.sleep(0.05)
    assert mem(c) == str(112 << 20)
    assert mem(b) == str(80 << 20)   # its own value wins
    # A profile change the users cannot take is refused.
    r = celld.request("PUT", "/1.0/profiles/" + prof, {"config": {"limits.memory": "nope"},
                                                      "devices": {}})
    assert r.status == 400, r
    for n in (a, b, c):
        state(celld, n, "stop", force=True)


# ---- events and logs -------------------------------------------------------------------------------

def test_lifecycle_events(celld):
    name, new = unique("ev"), unique("ev2")
    ws = fx.events_socket(celld)
    try:
        create_busybox(celld, name)
        state(celld, name, "start")
        state(celld, name, "stop", force=True)
        wait(celld, celld.request("PATCH", "/1.0/instances/" + name, {"config": {"user.x": "1"}}))
        wait(celld, celld.request("POST", "/1.0/instances/" + name, {"name": new}))
        wait(celld, celld.request("DELETE", "/1.0/instances/" + new))
        evs = fx.collect_events(ws, lambda e: "instance-deleted" in fx.actions(e))
    finally:
        ws.close()
    got = fx.actions(evs)
    for a in ("instance-created", "instance-started", "instance-stopped", "instance-updated",
              "instance-renamed", "instance-deleted"):
        assert a in got, (a, got)
    ren = [e for e in evs if e["metadata"]["action"] == "instance-renamed"][0]
    assert ren["metadata"]["source"] == "/1.0/instances/" + new
    assert ren["metadata"]["context"]["old_name"] == name


def test_logs(celld):
    name = unique("log")
    create_busybox(celld, name, start=True)
    logs = celld.get("/1.0/instances/%s/logs" % name).metadata
    assert "/1.0/instances/%s/logs/lxc.log" % name in logs
    r = celld.get("/1.0/instances/%s/logs/lxc.conf" % name)
    assert r.status == 200 and b"lxc.rootfs.path" in r.body
    assert celld.get("/1.0/instances/%s/logs/lxc.log" % name).status == 200
    assert celld.get("/1.0/instances/%s/logs/..%%2Fconfig" % name).status in (400, 404)
    assert celld.request("DELETE", "/1.0/instances/%s/logs/lxc.log" % name).status == 400
    assert celld.get("/1.0/instances/nosuch/logs").status == 404
    state(celld, name, "stop", force=True)


# ---- btrfs -------------------------------------------------------------------------------------------

def test_btrfs_pool_lifecycle(celld):
    if subprocess.run(["which", "mkfs.btrfs"], capture_output=True).returncode != 0:
        pytest.skip("no btrfs-progs")
    pool = unique("bt")
    r = celld.request("POST", "/1.0/storage-pools", {"name": pool, "driver": "btrfs",
                                                     "config": {"size": "2GiB"}})
    if r.status == 202:
        wait(celld, r)
    else:
        assert r.status in (200, 201), r
    name = unique("btc")
    root = {"type": "disk", "path": "/", "pool": pool}
    create_busybox(celld, name, devices={"root": root})
    assert get(celld, name)["expanded_devices"]["root"]["pool"] == pool
    state(celld, name, "start")
    assert fx.status(celld, name) == "Running"
    wait(celld, celld.request("POST", "/1.0/instances/%s/snapshots" % name, {"name": "s0"}))
    copy = unique("btcp")
    wait(celld, celld.request("POST", "/1.0/instances", {
        "name": copy, "source": {"type": "copy", "source": name}}))
    state(celld, name, "stop", force=True)
    wait(celld, celld.request("PUT", "/1.0/instances/" + name, {"restore": "s0"}))
    for n in (name, copy):
        wait(celld, celld.request("DELETE", "/1.0/instances/" + n))
        nothing_left(celld, n, pool)
    r = celld.request("DELETE", "/1.0/storage-pools/" + pool)
    if r.status == 202:
        wait(celld, r)
