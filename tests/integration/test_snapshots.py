"""/1.0/instances/<name>/snapshots in LXD's wire format: create (named and
from snapshots.pattern), list, get with ETag, PUT/PATCH of description and
expires_at, rename, delete, restore (files and config, running or not),
snapshots.expiry and pruning, copies that bring snapshots along, events and
bad input."""
import os
import time
from datetime import datetime, timezone

import images_fixture as fx
from images_fixture import create_busybox, state, unique, wait


def snap(celld, name, body=None):
    return wait(celld, celld.request("POST", "/1.0/instances/%s/snapshots" % name, body or {}))


def snap_names(celld, name):
    r = celld.get("/1.0/instances/%s/snapshots" % name)
    assert r.status == 200, r
    return [u.rsplit("/", 1)[1] for u in r.metadata]


def mark(celld, name, text):
    with open(os.path.join(fx.rootfs_path(celld, name), "root", "mark"), "w") as f:
        f.write(text)


def read_mark(celld, name):
    try:
        with open(os.path.join(fx.rootfs_path(celld, name), "root", "mark")) as f:
            return f.read()
    except OSError:
        return None


def test_create_list_get(celld):
    name = unique("sn")
    create_busybox(celld, name, config={"user.v": "1"})
    op = snap(celld, name)
    assert op["resources"]["instances"] == ["/1.0/instances/" + name]
    snap(celld, name)
    snap(celld, name, {"name": "named"})
    assert snap_names(celld, name) == ["snap0", "snap1", "named"]
    assert celld.get("/1.0/containers/%s/snapshots" % name).metadata[0] == \
        "/1.0/containers/%s/snapshots/snap0" % name
    objs = celld.get("/1.0/instances/%s/snapshots?recursion=1" % name).metadata
    assert [o["name"] for o in objs] == ["snap0", "snap1", "named"]
    r = celld.get("/1.0/instances/%s/snapshots/named" % name)
    assert r.status == 200 and r.headers.get("etag")
    s = r.metadata
    assert s["name"] == "named" and s["config"]["user.v"] == "1"
    assert s["expires_at"] == "0001-01-01T00:00:00Z" and s["stateful"] is False
    assert s["profiles"] == ["default"] and "root" in s["expanded_devices"]
    assert s["architecture"] == "x86_64"
    full = celld.get("/1.0/instances/%s?recursion=1" % name).metadata
    assert [x["name"] for x in full["snapshots"]] == ["snap0", "snap1", "named"]
    lst = celld.get("/1.0/instances?recursion=2").metadata
    assert [x["name"] for x in lst[0]["snapshots"]] == ["snap0", "snap1", "named"]
    # snapshots.pattern picks the next free number.
    wait(celld, celld.request("PATCH", "/1.0/instances/" + name,
                              {"config": {"snapshots.pattern": "auto-%d"}}))
    snap(celld, name)
    assert snap_names(celld, name)[-1] == "auto-0"


def test_bad_input(celld):
    name = unique("sb")
    create_busybox(celld, name)
    snap(celld, name, {"name": "s"})
    post = lambda b: celld.request("POST", "/1.0/instances/%s/snapshots" % name, b)
    assert post({"name": "s"}).status == 409
    assert post({"name": "a/b"}).status == 400
    assert post({"name": "a b"}).status == 400
    assert post({"name": ".."}).status == 400
    assert post({"name": "x", "stateful": True}).status == 400
    assert post({"name": "x", "expires_at": "tomorrow"}).status == 400
    assert celld.request("POST", "/1.0/instances/nosuch/snapshots", {}).status == 404
    assert celld.get("/1.0/instances/%s/snapshots/nosuch" % name).status == 404
    assert celld.request("DELETE", "/1.0/instances/%s/snapshots/nosuch" % name).status == 404
    assert celld.request("PUT", "/1.0/instances/" + name, {"restore": "nosuch"}).status == 404
    assert snap_names(celld, name) == ["s"]
    assert sorted(os.listdir(os.path.join(celld.dir, "storage-pools/default/containers-snapshots",
                                          name))) == ["s"]


def test_rename_update_delete_and_events(celld):
    name = unique("sr")
    src = "/1.0/instances/%s/snapshots/" % name
    create_busybox(celld, name)
    ws = fx.events_socket(celld)
    try:
        snap(celld, name, {"name": "a"})
        snap(celld, name, {"name": "b"})
        assert celld.request("POST", src + "a", {"name": "b"}).status == 409
        wait(celld, celld.request("POST", src + "a", {"name": "c"}))
        assert snap_names(celld, name) == ["c", "b"]
        r = celld.get(src + "c")
        etag = r.headers["etag"]
        exp = "2099-01-02T03:04:05Z"
        wait(celld, celld.request("PUT", src + "c", {"expires_at": exp, "description": "dd"},
                                  headers={"If-Match": etag}))
        assert celld.request("PUT", src + "c", {"expires_at": exp},
                             headers={"If-Match": etag}).status == 412
        s = celld.get(src + "c").metadata
        assert s["expires_at"].startswith("2099-01-02T03:04:05") and s["description"] == "dd"
        wait(celld, celld.request("PATCH", src + "c", {"description": "ee"}))
        s = celld.get(src + "c").metadata
        assert s["description"] == "ee" and s["expires_at"].startswith("2099-01-02")
        wait(celld, celld.request("DELETE", src + "b"))
        assert snap_names(celld, name) == ["c"]
        evs = fx.collect_events(ws, lambda e: "instance-snapshot-deleted" in fx.actions(e))
    finally:
        ws.close()
    got = fx.actions(evs)
    for a in ("instance-snapshot-created", "instance-snapshot-renamed",
              "instance-snapshot-updated", "instance-snapshot-deleted"):
        assert a in got, (a, got)
    assert os.listdir(os.path.join(celld.dir, "storage-pools/default/containers-snapshots",
                                   name)) == ["c"]


def test_restore_files_and_config(celld):
    name = unique("rst")
    create_busybox(celld, name, config={"user.v": "old"})
    mark(celld, name, "before")
    snap(celld, name, {"name": "s0"})
    mark(celld, name, "after")
    wait(celld, celld.request("PATCH", "/1.0/instances/" + name, {"config": {"user.v": "new"}}))
    wait(celld, celld.request("PUT", "/1.0/instances/" + name, {"restore": "s0"}))
    assert read_mark(celld, name) == "before"
    assert celld.get("/1.0/instances/" + name).metadata["config"]["user.v"] == "old"
    # A running container is stopped, restored and started again.
    state(celld, name, "start")
    mark(celld, name, "while running")
    wait(celld, celld.request("PUT", "/1.0/instances/" + name, {"restore": "s0"}))
    assert fx.status(celld, name) == "Running"
    assert read_mark(celld, name) == "before"
    assert snap_names(celld, name) == ["s0"]   # the snapshot stays
    state(celld, name, "stop", force=True)


def test_expiry_config_and_pruning(celld):
    name = unique("exp")
    create_busybox(celld, name, config={"snapshots.expiry": "2d"})
    snap(celld, name, {"name": "auto"})
    s = celld.get("/1.0/instances/%s/snapshots/auto" % name).metadata
    t = datetime.fromisoformat(s["expires_at"][:19]).replace(tzinfo=timezone.utc).timestamp()
    assert abs(t - (time.time() + 2 * 86400)) < 120, s["expires_at"]
    # An explicit expires_at wins; one in the past is pruned by the daemon.
    soon = datetime.fromtimestamp(time.time() + 1, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    snap(celld, name, {"name": "short", "expires_at": soon})
    assert "short" in snap_names(celld, name)
    deadline = time.time() + 10
    while "short" in snap_names(celld, name) and time.time() < deadline:
        time.sleep(0.1)
    assert snap_names(celld, name) == ["auto"]


def test_snapshot_of_running_container_and_copy(celld):
    name = unique("srun")
    create_busybox(celld, name, start=True)
    snap(celld, name, {"name": "live"})
    state(celld, name, "stop", force=True)
    copy = unique("scp")
    wait(celld, celld.request("POST", "/1.0/instances", {"name": copy,
                                                         "source": {"type": "copy",
                                                                    "source": name}}))
    assert snap_names(celld, copy) == ["live"]
    wait(celld, celld.request("PUT", "/1.0/instances/" + copy, {"restore": "live"}))
    state(celld, copy, "start")
    state(celld, copy, "stop", force=True)
    # Deleting the instance takes its snapshots.
    wait(celld, celld.request("DELETE", "/1.0/instances/" + name))
    assert not os.path.exists(os.path.join(celld.dir, "storage-pools/default/containers-snapshots",
                                           name))
