"""/1.0/profiles end to end: LXD's CRUD, rename, ETags, the default profile,
used_by and in-use refusals, lifecycle events, bad input that changes nothing,
and Debian's lxc client (LXD 5.0.2) driving celld.

Instances are put in the database the way the instances module stores them
(rows in `instances` and `instances_profiles`) so the in-use rules can be
checked without starting containers."""
import json
import os
import sqlite3
import subprocess

import pytest

from wsutil import ws_unix

ROOT = {"type": "disk", "path": "/", "pool": "default"}


def api(celld, method, path, body=None, headers=None):
    return celld.request(method, path, body=body, headers=headers)


def get_profile(celld, name):
    r = api(celld, "GET", "/1.0/profiles/" + name)
    assert r.status == 200, r
    return r


def profile_names(celld):
    r = api(celld, "GET", "/1.0/profiles")
    assert r.status == 200, r
    return sorted(u.rsplit("/", 1)[1] for u in r.metadata)


def db_exec(celld, sql, args=()):
    con = sqlite3.connect(os.path.join(celld.dir, "database", "local.db"), timeout=10)
    try:
        con.execute("PRAGMA foreign_keys=ON")
        with con:
            return con.execute(sql, args).lastrowid
    finally:
        con.close()


def add_instance(celld, name, profiles, devices=None, pool="default"):
    """An instance row as the instances module writes it."""
    iid = db_exec(celld, "INSERT INTO instances (name, architecture, created_at, pool, config,"
                         " devices) VALUES (?, 'x86_64', '2024-01-01T00:00:00Z', ?, '{}', ?)",
                  (name, pool, json.dumps(devices or {})))
    for i, p in enumerate(profiles):
        db_exec(celld, "INSERT INTO instances_profiles (instance_id, profile_id, apply_order)"
                       " SELECT ?, id, ? FROM profiles WHERE name = ?", (iid, i, p))
    return iid


def lxc(celld, *args, input=None, check=True):
    env = dict(os.environ, LXD_DIR=celld.dir, HOME=os.path.join(celld.dir, "lxc-home"))
    p = subprocess.run(["lxc"] + list(args), input=input, capture_output=True, env=env,
                       timeout=60)
    if check and p.returncode != 0:
        raise AssertionError("lxc %s failed (%d): %s%s" % (" ".join(args), p.returncode,
                                                           p.stdout.decode(), p.stderr.decode()))
    return p


def lxc_yaml(celld, *args):
    import yaml
    return yaml.safe_load(lxc(celld, *args).stdout)


# ---- the default profile ---------------------------------------------------------

def test_default_profile_from_first_start(celld):
    r = get_profile(celld, "default")
    p = r.metadata
    assert p["name"] == "default"
    assert p["description"] == "Default LXD profile"
    assert p["config"] == {}
    assert p["devices"] == {"root": ROOT}
    assert p["used_by"] == []
    assert len(r.headers["etag"].strip('"')) == 64


def test_default_profile_cannot_be_renamed_or_deleted(celld):
    r = api(celld, "POST", "/1.0/profiles/default", {"name": "other"})
    assert r.status == 403 and r.json["error"] == "The 'default' profile cannot be renamed", r
    r = api(celld, "DELETE", "/1.0/profiles/default")
    assert r.status == 403 and r.json["error"] == "The 'default' profile cannot be deleted", r
    assert profile_names(celld) == ["default"]


def test_default_survives_restart_and_is_not_recreated(celld):
    # Changing the default profile sticks across a restart: it is made once.
    r = api(celld, "PATCH", "/1.0/profiles/default", {"config": {"user.x": "1"}})
    assert r.status == 200, r
    assert celld.stop() == 0
    celld.start()
    assert get_profile(celld, "default").metadata["config"] == {"user.x": "1"}
    assert profile_names(celld) == ["default"]


# ---- CRUD -------------------------------------------------------------------------

def test_create_get_list(celld):
    body = {"name": "web", "description": "web servers",
            "config": {"limits.cpu": "2", "user.role": "web"},
            "devices": {"data": {"type": "disk", "source": "/srv", "path": "/srv"}}}
    r = api(celld, "POST", "/1.0/profiles", body)
    assert r.status == 201, r
    assert r.headers["location"] == "/1.0/profiles/web"
    p = get_profile(celld, "web").metadata
    assert p == {"name": "web", "description": "web servers", "config": body["config"],
                 "devices": body["devices"], "used_by": []}
    r = api(celld, "GET", "/1.0/profiles")
    assert sorted(r.metadata) == ["/1.0/profiles/default", "/1.0/profiles/web"]
    r = api(celld, "GET", "/1.0/profiles?recursion=1")
    assert {p["name"]: p for p in r.metadata}["web"]["config"] == body["config"]


def test_create_minimal_and_unset_values(celld):
    r = api(celld, "POST", "/1.0/profiles", {"name": "bare", "config": {"user.gone": ""}})
    assert r.status == 201, r
    p = get_profile(celld, "bare").metadata
    assert p["config"] == {} and p["devices"] == {} and p["description"] == ""


def test_put_replaces_everything(celld):
    api(celld, "POST", "/1.0/profiles", {"name": "p", "description": "d",
                                         "config": {"user.a": "1", "user.b": "2"},
                                         "devices": {"n": {"type": "none"}}})
    r = api(celld, "PUT", "/1.0/profiles/p", {"config": {"user.c": "3"}})
    assert r.status == 200, r
    p = get_profile(celld, "p").metadata
    assert p["config"] == {"user.c": "3"}
    assert p["devices"] == {}
    assert p["description"] == ""


def test_patch_merges(celld):
    api(celld, "POST", "/1.0/profiles", {"name": "p", "description": "keep",
                                         "config": {"user.a": "1", "user.b": "2", "user.c": "3"},
                                         "devices": {"n1": {"type": "none"},
                                                     "n2": {"type": "none"}}})
    r = api(celld, "PATCH", "/1.0/profiles/p",
            {"config": {"user.a": "changed", "user.b": "", "user.c": None, "user.d": "4"},
             "devices": {"n2": None, "n3": {"type": "none"}}})
    assert r.status == 200, r
    p = get_profile(celld, "p").metadata
    assert p["config"] == {"user.a": "changed", "user.d": "4"}
    assert p["devices"] == {"n1": {"type": "none"}, "n3": {"type": "none"}}
    assert p["description"] == "keep"


def test_etag_guards_updates(celld):
    api(celld, "POST", "/1.0/profiles", {"name": "p", "config": {"user.a": "1"}})
    etag = get_profile(celld, "p").headers["etag"]
    stale = '"' + "0" * 64 + '"'
    for method in ("PUT", "PATCH"):
        r = api(celld, method, "/1.0/profiles/p", {"config": {"user.a": "2"}},
                headers={"If-Match": stale})
        assert r.status == 412, r
    assert get_profile(celld, "p").metadata["config"] == {"user.a": "1"}
    r = api(celld, "PUT", "/1.0/profiles/p", {"config": {"user.a": "2"}},
            headers={"If-Match": etag})
    assert r.status == 200, r
    # The old tag is stale now.
    r = api(celld, "PUT", "/1.0/profiles/p", {"config": {"user.a": "3"}},
            headers={"If-Match": etag})
    assert r.status == 412, r
    assert get_profile(celld, "p").metadata["config"] == {"user.a": "2"}


def test_rename(celld):
    api(celld, "POST", "/1.0/profiles", {"name": "old", "config": {"user.a": "1"}})
    api(celld, "POST", "/1.0/profiles", {"name": "taken"})
    r = api(celld, "POST", "/1.0/profiles/old", {"name": "taken"})
    assert r.status == 409, r
    r = api(celld, "POST", "/1.0/profiles/old", {"name": "new"})
    assert r.status == 201, r
    assert r.headers["location"] == "/1.0/profiles/new"
    assert api(celld, "GET", "/1.0/profiles/old").status == 404
    assert get_profile(celld, "new").metadata["config"] == {"user.a": "1"}
    r = api(celld, "POST", "/1.0/profiles/missing", {"name": "x"})
    assert r.status == 404, r
    for bad in ("", "a/b", "..", None):
        r = api(celld, "POST", "/1.0/profiles/new", {"name": bad})
        assert r.status == 400, (bad, r)
    assert profile_names(celld) == ["default", "new", "taken"]


def test_rename_keeps_instances_attached(celld):
    api(celld, "POST", "/1.0/profiles", {"name": "old"})
    add_instance(celld, "c1", ["default", "old"])
    assert api(celld, "POST", "/1.0/profiles/old", {"name": "new"}).status == 201
    assert get_profile(celld, "new").metadata["used_by"] == ["/1.0/instances/c1"]


def test_delete(celld):
    api(celld, "POST", "/1.0/profiles", {"name": "gone"})
    r = api(celld, "DELETE", "/1.0/profiles/gone")
    assert r.status == 200, r
    assert api(celld, "GET", "/1.0/profiles/gone").status == 404
    assert api(celld, "DELETE", "/1.0/profiles/gone").status == 404
    assert api(celld, "PUT", "/1.0/profiles/gone", {}).status == 404
    assert api(celld, "PATCH", "/1.0/profiles/gone", {}).status == 404


# ---- in use ----------------------------------------------------------------------

def test_used_by_and_delete_refused_while_used(celld):
    api(celld, "POST", "/1.0/profiles", {"name": "extra", "config": {"user.x": "1"}})
    add_instance(celld, "c2", ["default", "extra"])
    add_instance(celld, "c1", ["default"])
    assert get_profile(celld, "extra").metadata["used_by"] == ["/1.0/instances/c2"]
    assert get_profile(celld, "default").metadata["used_by"] == ["/1.0/instances/c1",
                                                                 "/1.0/instances/c2"]
    r = api(celld, "DELETE", "/1.0/profiles/extra")
    assert r.status == 400 and r.json["error"] == "Profile is currently in use", r
    assert get_profile(celld, "extra").metadata["config"] == {"user.x": "1"}


def test_update_refused_when_an_instance_would_break(celld):
    add_instance(celld, "c1", ["default"],
                 devices={"local": {"type": "disk", "source": "/srv", "path": "/mnt"}})
    before = get_profile(celld, "default").metadata
    # c1's root disk comes from the default profile.
    r = api(celld, "PUT", "/1.0/profiles/default", {"description": "x", "devices": {}})
    assert r.status == 400 and "root disk" in r.json["error"], r
    # Moving the root disk to another pool strands the rootfs too.
    r = api(celld, "POST", "/1.0/storage-pools", {"name": "other", "driver": "dir"})
    assert r.status == 201, r
    r = api(celld, "PATCH", "/1.0/profiles/default",
            {"devices": {"root": dict(ROOT, pool="other")}})
    assert r.status == 400 and "root disk" in r.json["error"], r
    # A device clashing with c1's own disk on /mnt once expanded.
    r = api(celld, "PATCH", "/1.0/profiles/default",
            {"devices": {"more": {"type": "disk", "source": "/tmp", "path": "/mnt"}}})
    assert r.status == 400 and "c1" in r.json["error"], r
    assert get_profile(celld, "default").metadata == before
    # Something harmless goes through.
    r = api(celld, "PATCH", "/1.0/profiles/default", {"config": {"limits.memory": "1GiB"}})
    assert r.status == 200, r


# ---- bad input --------------------------------------------------------------------

BAD_NAMES = ["", "a/b", ".", "..", "tab\tname", "line\nbreak"]

BAD_CONTENT = [
    ({"config": {"bogus.key": "1"}}, "bogus.key"),
    ({"config": {"limits.cpu": "lots"}}, "limits.cpu"),
    ({"config": {"limits.memory": 5}}, "limits.memory"),
    ({"config": {"volatile.eth0.hwaddr": "00:16:3e:00:00:01"}}, "Volatile"),
    ({"config": {"image.os": "debian"}}, "Image"),
    ({"config": "notanobject"}, "config"),
    ({"devices": {"d": {"type": "gpu-nonsense"}}}, "d"),
    ({"devices": {"d": {"path": "/x"}}}, "type"),
    ({"devices": {"d": {"type": "disk", "path": "/mnt"}}}, "source"),
    ({"devices": {"root": dict(ROOT, pool="nosuchpool")}}, "nosuchpool"),
    ({"devices": {"a": {"type": "disk", "source": "/a", "path": "/m"},
                  "b": {"type": "disk", "source": "/b", "path": "/m"}}}, "/m"),
    ({"devices": ["not", "an", "object"]}, "devices"),
    ({"description": 7}, "description"),
]


def test_bad_names_rejected(celld):
    for name in BAD_NAMES:
        r = api(celld, "POST", "/1.0/profiles", {"name": name})
        assert r.status == 400, (name, r)
    r = api(celld, "POST", "/1.0/profiles", {"description": "no name"})
    assert r.status == 400 and r.json["error"] == "No name provided", r
    r = api(celld, "POST", "/1.0/profiles", {"name": 5})
    assert r.status == 400, r
    assert profile_names(celld) == ["default"]


def test_duplicate_rejected(celld):
    assert api(celld, "POST", "/1.0/profiles", {"name": "dup", "config": {"user.a": "1"}}).status == 201
    r = api(celld, "POST", "/1.0/profiles", {"name": "dup", "config": {"user.a": "2"}})
    assert r.status == 409, r
    assert get_profile(celld, "dup").metadata["config"] == {"user.a": "1"}
    r = api(celld, "POST", "/1.0/profiles", {"name": "default"})
    assert r.status == 409, r


def test_bad_content_rejected_and_nothing_changes(celld):
    api(celld, "POST", "/1.0/profiles", {"name": "p", "config": {"user.a": "1"}})
    before = get_profile(celld, "p").metadata
    for body, word in BAD_CONTENT:
        r = api(celld, "POST", "/1.0/profiles", dict(body, name="new"))
        assert r.status == 400 and word in r.json["error"], (body, r)
        for method in ("PUT", "PATCH"):
            r = api(celld, method, "/1.0/profiles/p", body)
            assert r.status == 400 and word in r.json["error"], (method, body, r)
    assert profile_names(celld) == ["default", "p"]
    assert get_profile(celld, "p").metadata == before


def test_malformed_bodies(celld):
    for path, method in (("/1.0/profiles", "POST"), ("/1.0/profiles/default", "PUT"),
                         ("/1.0/profiles/default", "PATCH")):
        for body in ("{not json", "[1, 2]", "\"str\"", ""):
            r = api(celld, method, path, body, headers={"Content-Type": "application/json"})
            assert r.status == 400, (path, method, body, r)
    assert get_profile(celld, "default").metadata["devices"] == {"root": ROOT}


# ---- events -------------------------------------------------------------------------

def test_lifecycle_events(celld):
    ws = ws_unix(celld, "/1.0/events?type=lifecycle")
    try:
        assert api(celld, "POST", "/1.0/profiles", {"name": "ev"}).status == 201
        assert api(celld, "PATCH", "/1.0/profiles/ev", {"config": {"user.a": "1"}}).status == 200
        assert api(celld, "POST", "/1.0/profiles/ev", {"name": "ev2"}).status == 201
        assert api(celld, "DELETE", "/1.0/profiles/ev2").status == 200
        # A refused change sends nothing.
        assert api(celld, "POST", "/1.0/profiles", {"name": "ev2", "config": {"x": "1"}}).status == 400
        got = [json.loads(ws.recv())["metadata"] for _ in range(4)]
    finally:
        ws.close()
    assert [(e["action"], e["source"]) for e in got] == [
        ("profile-created", "/1.0/profiles/ev"),
        ("profile-updated", "/1.0/profiles/ev"),
        ("profile-renamed", "/1.0/profiles/ev2"),
        ("profile-deleted", "/1.0/profiles/ev2"),
    ]
    assert got[2]["context"] == {"old_name": "ev"}


# ---- Debian's lxc client ---------------------------------------------------------------

def test_lxc_profile_commands(celld):
    out = lxc(celld, "profile", "list").stdout.decode()
    assert "default" in out and "Default LXD profile" in out

    lxc(celld, "profile", "create", "web")
    lxc(celld, "profile", "set", "web", "limits.cpu", "2")
    lxc(celld, "profile", "set", "web", "user.role=frontend")
    lxc(celld, "profile", "device", "add", "web", "data", "disk", "source=/srv", "path=/data")
    shown = lxc_yaml(celld, "profile", "show", "web")
    assert shown["config"] == {"limits.cpu": "2", "user.role": "frontend"}
    assert shown["devices"] == {"data": {"type": "disk", "source": "/srv", "path": "/data"}}

    lxc(celld, "profile", "copy", "web", "web2")
    assert lxc_yaml(celld, "profile", "show", "web2")["config"] == shown["config"]

    lxc(celld, "profile", "unset", "web", "limits.cpu")
    lxc(celld, "profile", "device", "remove", "web", "data")
    shown = lxc_yaml(celld, "profile", "show", "web")
    assert shown["config"] == {"user.role": "frontend"} and shown["devices"] == {}

    lxc(celld, "profile", "edit", "web2", input=b"description: edited\n"
                                                b"config:\n  limits.memory: 512MiB\n"
                                                b"devices: {}\n")
    shown = get_profile(celld, "web2").metadata
    assert shown["description"] == "edited"
    assert shown["config"] == {"limits.memory": "512MiB"} and shown["devices"] == {}

    lxc(celld, "profile", "rename", "web2", "web3")
    assert profile_names(celld) == ["default", "web", "web3"]
    lxc(celld, "profile", "delete", "web3")
    assert profile_names(celld) == ["default", "web"]

    # Refusals come back as errors and change nothing.
    p = lxc(celld, "profile", "set", "web", "bogus.key", "1", check=False)
    assert p.returncode != 0 and b"bogus.key" in p.stderr
    p = lxc(celld, "profile", "delete", "default", check=False)
    assert p.returncode != 0 and b"cannot be deleted" in p.stderr
    p = lxc(celld, "profile", "rename", "default", "x", check=False)
    assert p.returncode != 0 and b"cannot be renamed" in p.stderr
    p = lxc(celld, "profile", "create", "web", check=False)
    assert p.returncode != 0
    assert lxc_yaml(celld, "profile", "show", "web")["config"] == {"user.role": "frontend"}
