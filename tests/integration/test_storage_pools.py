"""/1.0/storage-pools end to end: the default dir pool, dir and btrfs loop
pools created and deleted (mounts and loop devices gone afterwards), zfs where
the host has it, resources, updates, in-use refusals, crash recovery at
start-up, lifecycle events, bad input that changes nothing, and Debian's lxc
client (LXD 5.0.2) driving celld.

Every daemon runs in its own CELL_DIR; whatever a test leaves mounted or
attached under it is unmounted and detached by the fixture, even on failure."""
import json
import os
import shutil
import sqlite3
import subprocess
import threading

import pytest

from cellenv import Celld
from wsutil import ws_unix

GIB = 1 << 30


# ---- host state under a cell dir ----------------------------------------------------

def mounts_under(directory):
    """Mount points below directory, deepest last (from /proc/self/mountinfo)."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            mp = fields[4].replace("\\040", " ")
            if mp.startswith(directory.rstrip("/") + "/"):
                out.append((mp, fields[fields.index("-") + 1], fields[5], line))
    return out


def mount_info(path):
    for mp, fstype, opts, line in mounts_under(os.path.dirname(path)):
        if mp == path:
            return fstype, line
    return None


def loops_under(directory):
    """Loop devices whose backing file lies below directory."""
    out = []
    for dev in os.listdir("/sys/block"):
        bf = "/sys/block/%s/loop/backing_file" % dev
        try:
            with open(bf) as f:
                backing = f.read().strip()
        except OSError:
            continue
        if backing.startswith(directory.rstrip("/") + "/"):
            out.append(("/dev/" + dev, backing))
    return out


def release_storage(directory):
    for mp, _, _, _ in sorted(mounts_under(directory), key=lambda m: -len(m[0])):
        subprocess.run(["umount", "-l", mp], capture_output=True)
    for dev, _ in loops_under(directory):
        subprocess.run(["losetup", "-d", dev], capture_output=True)


@pytest.fixture
def celld():
    d = Celld().start()
    try:
        yield d
        rc = d.stop()
        assert rc == 0, "celld exited %s:\n%s" % (rc, d.stderr()[-4000:])
    finally:
        d.kill()
        release_storage(d.dir)
        d.cleanup()


# ---- helpers ------------------------------------------------------------------------

def api(celld, method, path, body=None, headers=None):
    return celld.request(method, path, body=body, headers=headers)


def get_pool(celld, name):
    r = api(celld, "GET", "/1.0/storage-pools/" + name)
    assert r.status == 200, r
    return r


def pool_names(celld):
    r = api(celld, "GET", "/1.0/storage-pools")
    assert r.status == 200, r
    return sorted(u.rsplit("/", 1)[1] for u in r.metadata)


def create(celld, name, driver, config=None, description=None):
    body = {"name": name, "driver": driver, "config": config or {}}
    if description is not None:
        body["description"] = description
    return api(celld, "POST", "/1.0/storage-pools", body)


def pool_dir(celld, name):
    return os.path.join(celld.dir, "storage-pools", name)


def disks(celld):
    d = os.path.join(celld.dir, "disks")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def db_exec(celld, sql, args=()):
    con = sqlite3.connect(os.path.join(celld.dir, "database", "local.db"), timeout=10)
    try:
        with con:
            return con.execute(sql, args).lastrowid
    finally:
        con.close()


def snapshot(celld):
    """What bad input must leave alone."""
    r = api(celld, "GET", "/1.0/storage-pools?recursion=1")
    assert r.status == 200, r
    return (sorted(json.dumps(p, sort_keys=True) for p in r.metadata),
            sorted(os.listdir(os.path.join(celld.dir, "storage-pools"))), disks(celld),
            loops_under(celld.dir), [m[0] for m in mounts_under(celld.dir)])


def lxc(celld, *args, input=None, check=True):
    env = dict(os.environ, LXD_DIR=celld.dir, HOME=os.path.join(celld.dir, "lxc-home"))
    p = subprocess.run(["lxc"] + list(args), input=input, capture_output=True, env=env,
                       timeout=120)
    if check and p.returncode != 0:
        raise AssertionError("lxc %s failed (%d): %s%s" % (" ".join(args), p.returncode,
                                                           p.stdout.decode(), p.stderr.decode()))
    return p


def extensions(celld):
    return api(celld, "GET", "/1.0").metadata["api_extensions"]


def btrfs_reason():
    if not shutil.which("mkfs.btrfs"):
        return "btrfs cannot run here: mkfs.btrfs is not installed (btrfs-progs)"
    if not os.path.exists("/dev/loop-control"):
        return "btrfs cannot run here: no /dev/loop-control for loop devices"
    return None


def zfs_reason():
    if not os.path.exists("/sys/module/zfs"):
        return "ZFS cannot run here: the zfs kernel module is not loaded on this machine"
    if not shutil.which("zpool") or not shutil.which("zfs"):
        return "ZFS cannot run here: zfsutils-linux (zpool, zfs) is not installed"
    return None


needs_btrfs = pytest.mark.skipif(btrfs_reason() is not None, reason=btrfs_reason() or "")


# ---- the default pool -------------------------------------------------------------------

def test_default_dir_pool_from_first_start(celld):
    r = get_pool(celld, "default")
    p = r.metadata
    assert p["name"] == "default" and p["driver"] == "dir"
    assert p["config"] == {"source": pool_dir(celld, "default")}
    assert p["status"] == "Created" and p["locations"] == ["none"]
    assert p["used_by"] == ["/1.0/profiles/default"]
    assert len(r.headers["etag"].strip('"')) == 64
    assert os.path.isdir(os.path.join(pool_dir(celld, "default"), "containers"))
    assert api(celld, "GET", "/1.0/storage-pools").metadata == ["/1.0/storage-pools/default"]


def test_default_pool_in_use_by_default_profile(celld):
    r = api(celld, "DELETE", "/1.0/storage-pools/default")
    assert r.status == 400 and r.json["error"] == "The storage pool is currently in use", r
    assert get_pool(celld, "default").metadata["status"] == "Created"


def test_deleted_default_pool_is_not_recreated(celld):
    # Free it (take the root disk off the default profile), delete, restart.
    assert api(celld, "PUT", "/1.0/profiles/default",
               {"description": "Default LXD profile"}).status == 200
    assert api(celld, "DELETE", "/1.0/storage-pools/default").status == 200
    assert not os.path.exists(pool_dir(celld, "default"))
    assert celld.stop() == 0
    celld.start()
    assert pool_names(celld) == []


def test_resources(celld):
    r = api(celld, "GET", "/1.0/storage-pools/default/resources")
    assert r.status == 200, r
    space, inodes = r.metadata["space"], r.metadata["inodes"]
    st = os.statvfs(pool_dir(celld, "default"))
    assert space["total"] == st.f_blocks * st.f_frsize
    assert 0 < space["used"] <= space["total"]
    assert inodes["total"] == st.f_files and 0 <= inodes["used"] <= inodes["total"]
    assert api(celld, "GET", "/1.0/storage-pools/nope/resources").status == 404


# ---- dir pools ----------------------------------------------------------------------------

def test_dir_pool_lifecycle(celld, tmp_path):
    r = create(celld, "d1", "dir", description="first")
    assert r.status == 201, r
    assert r.headers["location"] == "/1.0/storage-pools/d1"
    p = get_pool(celld, "d1").metadata
    assert p["description"] == "first" and p["config"] == {"source": pool_dir(celld, "d1")}
    assert p["used_by"] == []
    assert pool_names(celld) == ["d1", "default"]
    objs = api(celld, "GET", "/1.0/storage-pools?recursion=1").metadata
    assert sorted(o["name"] for o in objs) == ["d1", "default"]

    # A dir pool on a directory elsewhere is bind-mounted in.
    src = str(tmp_path / "elsewhere")
    assert create(celld, "d2", "dir", {"source": src}).status == 201
    assert get_pool(celld, "d2").metadata["config"] == {"source": src}
    assert mount_info(pool_dir(celld, "d2")) is not None
    assert os.path.isdir(os.path.join(src, "containers"))

    for name in ("d1", "d2"):
        r = api(celld, "DELETE", "/1.0/storage-pools/" + name)
        assert r.status == 200, r
        assert api(celld, "GET", "/1.0/storage-pools/" + name).status == 404
        assert not os.path.exists(pool_dir(celld, name))
    assert mounts_under(celld.dir) == []
    assert api(celld, "DELETE", "/1.0/storage-pools/d1").status == 404


def test_update_description_and_user_keys(celld):
    assert create(celld, "u", "dir").status == 201
    r = get_pool(celld, "u")
    etag, cfg = r.headers["etag"], r.metadata["config"]
    r = api(celld, "PUT", "/1.0/storage-pools/u",
            {"description": "new", "config": dict(cfg, **{"user.team": "a"})},
            headers={"If-Match": etag})
    assert r.status == 200, r
    p = get_pool(celld, "u").metadata
    assert p["description"] == "new" and p["config"]["user.team"] == "a"
    # The old tag is stale now.
    r = api(celld, "PUT", "/1.0/storage-pools/u", {"description": "x", "config": cfg},
            headers={"If-Match": etag})
    assert r.status == 412, r
    r = api(celld, "PATCH", "/1.0/storage-pools/u",
            {"config": {"user.team": None, "user.more": "b", "rsync.compression": "false"}})
    assert r.status == 200, r
    p = get_pool(celld, "u").metadata
    assert p["description"] == "new"
    assert p["config"] == {"source": pool_dir(celld, "u"), "user.more": "b",
                           "rsync.compression": "false"}


def test_fixed_and_unknown_keys_refused_on_update(celld):
    assert create(celld, "u", "dir").status == 201
    before = get_pool(celld, "u").metadata
    for method, body in (
            ("PATCH", {"config": {"source": "/tmp/elsewhere"}}),
            ("PATCH", {"config": {"source": ""}}),
            ("PUT", {"config": {}}),                         # drops source
            ("PATCH", {"config": {"size": "1GiB"}}),         # not a dir key
            ("PATCH", {"config": {"bogus": "1"}}),
            ("PATCH", {"config": {"rsync.compression": "maybe"}}),
            ("PATCH", {"config": {"user.x": 1}}),
            ("PATCH", {"config": "str"}),
            ("PATCH", {"description": 5})):
        r = api(celld, method, "/1.0/storage-pools/u", body)
        assert r.status == 400, (method, body, r)
    assert get_pool(celld, "u").metadata == before
    assert api(celld, "PATCH", "/1.0/storage-pools/nope", {}).status == 404


# ---- btrfs --------------------------------------------------------------------------------

@needs_btrfs
def test_btrfs_loop_pool_created_and_deleted(celld):
    before_loops = loops_under(celld.dir)
    r = create(celld, "bt", "btrfs", {"size": "1GiB"})
    assert r.status == 201, r
    img = os.path.join(celld.dir, "disks", "bt.img")
    p = get_pool(celld, "bt").metadata
    assert p["driver"] == "btrfs" and p["status"] == "Created"
    assert p["config"] == {"size": "1GiB", "source": img}
    assert os.path.getsize(img) == GIB
    info = mount_info(pool_dir(celld, "bt"))
    assert info is not None and info[0] == "btrfs", info
    assert [b for _, b in loops_under(celld.dir)] == [img]

    res = api(celld, "GET", "/1.0/storage-pools/bt/resources").metadata
    assert GIB // 2 < res["space"]["total"] <= GIB
    assert 0 <= res["space"]["used"] < res["space"]["total"]

    r = api(celld, "DELETE", "/1.0/storage-pools/bt")
    assert r.status == 200, r
    assert mount_info(pool_dir(celld, "bt")) is None
    assert loops_under(celld.dir) == before_loops == []
    assert not os.path.exists(img) and not os.path.exists(pool_dir(celld, "bt"))
    assert pool_names(celld) == ["default"]


@needs_btrfs
def test_btrfs_mount_options_remount(celld):
    assert create(celld, "bt", "btrfs", {"size": "1GiB"}).status == 201
    r = api(celld, "PATCH", "/1.0/storage-pools/bt",
            {"config": {"btrfs.mount_options": "user_subvol_rm_allowed,compress=zstd"}})
    assert r.status == 200, r
    assert "compress=zstd" in mount_info(pool_dir(celld, "bt"))[1]
    # The kernel refuses an unknown option: 400, pool and config as they were.
    before = get_pool(celld, "bt").metadata
    r = api(celld, "PATCH", "/1.0/storage-pools/bt",
            {"config": {"btrfs.mount_options": "no_such_option_here"}})
    assert r.status == 400, r
    assert get_pool(celld, "bt").metadata == before
    # Size and source are fixed once made.
    for body in ({"size": "2GiB"}, {"source": "/tmp/x.img"}):
        r = api(celld, "PATCH", "/1.0/storage-pools/bt", {"config": body})
        assert r.status == 400 and "cannot be changed" in r.json["error"], r
    assert api(celld, "DELETE", "/1.0/storage-pools/bt").status == 200
    assert loops_under(celld.dir) == []


@needs_btrfs
def test_btrfs_pool_survives_restart(celld):
    assert create(celld, "bt", "btrfs", {"size": "1GiB"}).status == 201
    marker = os.path.join(pool_dir(celld, "bt"), "marker")
    with open(marker, "w") as f:
        f.write("x")
    assert celld.stop() == 0
    celld.start()
    p = get_pool(celld, "bt").metadata
    assert p["status"] == "Created"
    assert mount_info(pool_dir(celld, "bt"))[0] == "btrfs"
    assert os.path.exists(marker)
    # A volume left in it (a custom volume no one manages yet): the driver
    # refuses, the pool stays usable.
    volume = os.path.join(pool_dir(celld, "bt"), "custom", "vol1")
    os.makedirs(volume)
    r = api(celld, "DELETE", "/1.0/storage-pools/bt")
    assert r.status == 409, r
    assert get_pool(celld, "bt").metadata["status"] == "Created"
    assert os.path.exists(marker)
    os.rmdir(volume)
    assert api(celld, "DELETE", "/1.0/storage-pools/bt").status == 200
    assert loops_under(celld.dir) == [] and mounts_under(celld.dir) == []


@needs_btrfs
def test_unavailable_pool_reported_and_deletable(celld):
    assert create(celld, "bt", "btrfs", {"size": "1GiB"}).status == 201
    assert celld.stop() == 0
    release_storage(celld.dir)
    os.unlink(os.path.join(celld.dir, "disks", "bt.img"))
    celld.start()
    p = get_pool(celld, "bt").metadata
    assert p["status"] == "Unavailable"
    r = api(celld, "GET", "/1.0/storage-pools/bt/resources")
    assert r.status == 503, r
    assert api(celld, "DELETE", "/1.0/storage-pools/bt").status == 200
    assert pool_names(celld) == ["default"] and not os.path.exists(pool_dir(celld, "bt"))


@needs_btrfs
def test_btrfs_bad_source_leaves_nothing(celld, tmp_path):
    before = snapshot(celld)
    # Not on btrfs: the driver refuses after the request looked fine.
    r = create(celld, "bt", "btrfs", {"source": str(tmp_path / "not-btrfs")})
    assert r.status == 400, r
    assert snapshot(celld) == before
    assert not os.path.exists(tmp_path / "not-btrfs")
    # The name is free again.
    assert create(celld, "bt", "btrfs", {"size": "1GiB"}).status == 201
    assert api(celld, "DELETE", "/1.0/storage-pools/bt").status == 200


# ---- zfs ----------------------------------------------------------------------------------

def test_zfs_loop_pool(celld):
    reason = zfs_reason()
    if reason:
        print(reason)
        pytest.skip(reason)
    r = create(celld, "zt", "zfs", {"size": "1GiB", "zfs.pool_name": "celltest%d" % os.getpid()})
    assert r.status == 201, r
    p = get_pool(celld, "zt").metadata
    assert p["driver"] == "zfs" and p["status"] == "Created"
    zpool = p["config"]["zfs.pool_name"]
    try:
        assert subprocess.run(["zpool", "list", zpool], capture_output=True).returncode == 0
        assert api(celld, "GET", "/1.0/storage-pools/zt/resources").status == 200
        assert api(celld, "DELETE", "/1.0/storage-pools/zt").status == 200
        assert subprocess.run(["zpool", "list", zpool], capture_output=True).returncode != 0
        assert disks(celld) == []
    finally:
        subprocess.run(["zpool", "destroy", "-f", zpool], capture_output=True)


def test_zfs_refused_plainly_where_absent(celld):
    reason = zfs_reason()
    if not reason:
        pytest.skip("ZFS is available here; test_zfs_loop_pool covers it")
    before = snapshot(celld)
    r = create(celld, "zt", "zfs")
    assert r.status == 400 and "not available" in r.json["error"], r
    assert snapshot(celld) == before


# ---- in use -----------------------------------------------------------------------------

def test_in_use_by_instances_and_profiles(celld):
    assert create(celld, "p1", "dir").status == 201
    assert create(celld, "p2", "dir").status == 201
    db_exec(celld, "INSERT INTO instances (name, architecture, created_at, pool) VALUES"
                   " ('c1', 'x86_64', '2024-01-01T00:00:00Z', 'p1')")
    r = api(celld, "POST", "/1.0/profiles",
            {"name": "onp2", "devices": {"root": {"type": "disk", "path": "/", "pool": "p2"}}})
    assert r.status == 201, r
    assert get_pool(celld, "p1").metadata["used_by"] == ["/1.0/instances/c1"]
    assert get_pool(celld, "p2").metadata["used_by"] == ["/1.0/profiles/onp2"]
    for name in ("p1", "p2"):
        r = api(celld, "DELETE", "/1.0/storage-pools/" + name)
        assert r.status == 400 and r.json["error"] == "The storage pool is currently in use", r
        assert get_pool(celld, name).metadata["status"] == "Created"
    assert api(celld, "DELETE", "/1.0/profiles/onp2").status == 200
    assert api(celld, "DELETE", "/1.0/storage-pools/p2").status == 200
    # A profile cannot point at a pool that does not exist.
    r = api(celld, "POST", "/1.0/profiles",
            {"name": "onp2", "devices": {"root": {"type": "disk", "path": "/", "pool": "p2"}}})
    assert r.status == 400 and "p2" in r.json["error"], r


# ---- crash recovery at start-up ---------------------------------------------------------------

def test_interrupted_create_is_rolled_back(celld):
    assert celld.stop() == 0
    db_exec(celld, "INSERT INTO storage_pools (name, driver, config, state)"
                   " VALUES ('ghost', 'dir', '{}', 'Pending')")
    os.makedirs(os.path.join(pool_dir(celld, "ghost"), "containers"))
    celld.start()
    assert api(celld, "GET", "/1.0/storage-pools/ghost").status == 404
    assert not os.path.exists(pool_dir(celld, "ghost"))
    assert create(celld, "ghost", "dir").status == 201


def test_interrupted_delete_is_finished(celld):
    assert create(celld, "half", "dir").status == 201
    assert celld.stop() == 0
    db_exec(celld, "UPDATE storage_pools SET state = 'Deleting' WHERE name = 'half'")
    celld.start()
    assert api(celld, "GET", "/1.0/storage-pools/half").status == 404
    assert not os.path.exists(pool_dir(celld, "half"))
    assert pool_names(celld) == ["default"]


# ---- bad input --------------------------------------------------------------------------------

BAD_NAMES = ["", "a/b", ".hidden", "-dash", "x" * 64, "sp ace", "caf\u00e9", "a\nb", None, 5]

BAD_CREATES = [
    ({"name": "b1"}, "No driver provided"),
    ({"name": "b1", "driver": "lvm"}, "lvm"),
    ({"name": "b1", "driver": 3}, "driver"),
    ({"name": "b1", "driver": "dir", "config": {"foo": "bar"}}, "foo"),
    ({"name": "b1", "driver": "dir", "config": {"size": "1GiB"}}, "size"),
    ({"name": "b1", "driver": "dir", "config": {"source": "relative/path"}}, "source"),
    ({"name": "b1", "driver": "dir", "config": {"user.x": 7}}, "user.x"),
    ({"name": "b1", "driver": "dir", "config": "notanobject"}, "config"),
    ({"name": "b1", "driver": "dir", "description": ["x"]}, "description"),
    ({"name": "b1", "driver": "btrfs", "config": {"size": "lots"}}, "size"),
    ({"name": "b1", "driver": "btrfs", "config": {"size": "0"}}, "size"),
    ({"name": "b1", "driver": "btrfs", "config": {"btrfs.mount_options": "a b"}}, "mount"),
    ({"name": "b1", "driver": "btrfs", "config": {"zfs.pool_name": "x"}}, "zfs.pool_name"),
]


def test_bad_names_rejected(celld):
    before = snapshot(celld)
    for name in BAD_NAMES:
        r = create(celld, name, "dir")
        assert r.status == 400, (name, r)
    assert snapshot(celld) == before


def test_duplicate_rejected(celld):
    r = create(celld, "default", "dir")
    assert r.status == 409, r
    assert create(celld, "dup", "dir", description="one").status == 201
    before = snapshot(celld)
    r = create(celld, "dup", "dir", description="two")
    assert r.status == 409 and "already exists" in r.json["error"], r
    assert snapshot(celld) == before
    assert get_pool(celld, "dup").metadata["description"] == "one"


def test_concurrent_creates_of_one_name(celld):
    results = []

    def go():
        results.append(create(celld, "race", "dir").status)
    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [201, 409, 409, 409], results
    assert pool_names(celld) == ["default", "race"]


def test_bad_config_rejected_and_nothing_changes(celld):
    before = snapshot(celld)
    for body, word in BAD_CREATES:
        r = api(celld, "POST", "/1.0/storage-pools", body)
        assert r.status == 400 and word in r.json["error"], (body, r)
    for raw in ("{not json", "[]", ""):
        r = api(celld, "POST", "/1.0/storage-pools", raw,
                headers={"Content-Type": "application/json"})
        assert r.status == 400, (raw, r)
    assert snapshot(celld) == before


# ---- events ---------------------------------------------------------------------------------

def test_lifecycle_events(celld):
    ws = ws_unix(celld, "/1.0/events?type=lifecycle")
    try:
        assert create(celld, "ev", "dir").status == 201
        assert api(celld, "PATCH", "/1.0/storage-pools/ev", {"description": "x"}).status == 200
        assert api(celld, "DELETE", "/1.0/storage-pools/ev").status == 200
        assert create(celld, "ev", "dir", {"bogus": "1"}).status == 400   # nothing sent
        got = [json.loads(ws.recv())["metadata"] for _ in range(3)]
    finally:
        ws.close()
    assert [(e["action"], e["source"]) for e in got] == [
        ("storage-pool-created", "/1.0/storage-pools/ev"),
        ("storage-pool-updated", "/1.0/storage-pools/ev"),
        ("storage-pool-deleted", "/1.0/storage-pools/ev"),
    ]


# ---- Debian's lxc client ---------------------------------------------------------------------

def test_lxc_storage_commands(celld):
    out = lxc(celld, "storage", "list").stdout.decode()
    assert "default" in out and "dir" in out and "CREATED" in out

    lxc(celld, "storage", "create", "d1", "dir")
    assert "d1" in pool_names(celld)
    import yaml
    shown = yaml.safe_load(lxc(celld, "storage", "show", "d1").stdout)
    assert shown["driver"] == "dir" and shown["config"]["source"] == pool_dir(celld, "d1")
    lxc(celld, "storage", "set", "d1", "user.tag", "x")
    assert get_pool(celld, "d1").metadata["config"]["user.tag"] == "x"
    lxc(celld, "storage", "unset", "d1", "user.tag")
    assert "user.tag" not in get_pool(celld, "d1").metadata["config"]

    if btrfs_reason() is None:
        lxc(celld, "storage", "create", "b1", "btrfs", "size=1GiB")
        assert mount_info(pool_dir(celld, "b1"))[0] == "btrfs"
        lxc(celld, "storage", "delete", "b1")
        assert loops_under(celld.dir) == [] and mount_info(pool_dir(celld, "b1")) is None

    p = lxc(celld, "storage", "delete", "default", check=False)
    assert p.returncode != 0 and b"currently in use" in p.stderr
    p = lxc(celld, "storage", "create", "bad", "dir", "size=1GiB", check=False)
    assert p.returncode != 0 and b"size" in p.stderr
    p = lxc(celld, "storage", "create", "d1", "dir", check=False)
    assert p.returncode != 0 and b"already exists" in p.stderr
    lxc(celld, "storage", "delete", "d1")
    assert pool_names(celld) == ["default"]


def test_lxc_storage_info(celld):
    if "resources" not in extensions(celld):
        # The lxc client asks for the "resources" extension before it calls
        # /1.0/storage-pools/<pool>/resources; that name also promises
        # GET /1.0/resources, which celld does not serve yet.
        p = lxc(celld, "storage", "info", "default", check=False)
        assert p.returncode != 0 and b"resources" in p.stderr
        pytest.xfail("lxc storage info needs the \"resources\" API extension (/1.0/resources)")
    out = lxc(celld, "storage", "info", "default").stdout.decode()
    assert "default" in out and "space used" in out.lower()
