"""The container commands of `cell` end to end against a real celld and real
busybox containers: launch/init, list (columns, filters, formats, one
request), info, start/stop/restart/pause (--all, batches), delete,
rename/move, snapshot/restore, copy, config (instance keys, --expanded,
edit, devices), profile ... and storage ..., with remote prefixes; and the
same screens as Debian's `lxc` draws them against the same daemon.

Each test skips, saying which endpoint is missing, while the daemon side
does not serve it yet."""
import json
import os
import shutil
import subprocess

import pytest

import images_fixture as fx
from images_fixture import unique


def require(celld, *paths):
    """Skip (with the reason printed) while the daemon lacks an endpoint."""
    for p in paths:
        r = celld.get(p)
        if r.status == 404 and (not r.json or "not found" in (r.json.get("error") or "").lower()):
            pytest.skip("daemon endpoint %s is not served yet" % p)


def cell(celld, *args, ok=True, input=b""):
    """Run cell (stdin closed unless given: launch/init/edit read YAML from a non-tty stdin)."""
    p = celld.cell(*args, check=False, input=input)
    out, err = p.stdout.decode(), p.stderr.decode()
    if ok:
        assert p.returncode == 0, "cell %s failed (%d):\n%s%s" % (" ".join(args), p.returncode, out, err)
    else:
        assert p.returncode == 1, "cell %s should fail:\n%s%s" % (" ".join(args), out, err)
        assert err.splitlines()[-1].startswith("Error: "), err
    return out, err


def api(celld, path):
    r = celld.get(path)
    assert r.status == 200, r
    return r.metadata


def status(celld, name):
    return api(celld, "/1.0/instances/" + name)["status"]


def csv_rows(text):
    return [line.split(",") for line in text.splitlines()]


@pytest.fixture
def image(celld):
    require(celld, "/1.0/instances", "/1.0/images")
    return fx.import_busybox(celld)


# ---- launch, list, info, delete ----------------------------------------------------------------

def test_launch_list_info_delete(celld, image):
    name = unique("c")
    out, _ = cell(celld, "launch", "busybox", name)
    assert out == "Creating %s\nStarting %s\n" % (name, name)
    assert status(celld, name) == "Running"

    out, _ = cell(celld, "list", "-c", "ns", "-f", "csv")
    assert [name, "RUNNING"] in csv_rows(out)
    out, _ = cell(celld, "list", name, "-f", "json")
    listed = json.loads(out)
    assert [i["name"] for i in listed] == [name]
    assert listed[0]["state"]["pid"] > 0 and "snapshots" in listed[0]
    out, _ = cell(celld, "list", "-c", "nbPf", "-f", "csv", name)
    assert csv_rows(out) == [[name, "default", "default", image[:12]]]
    # the default columns (test_screens_match_lxc holds the layout to lxc's)
    out, _ = cell(celld, "list")
    assert [h.strip() for h in out.splitlines()[1].split("|")[1:-1]] == \
        ["NAME", "STATE", "IPV4", "IPV6", "TYPE", "SNAPSHOTS"]

    out, _ = cell(celld, "info", name)
    lines = out.splitlines()
    assert lines[:4] == ["Name: " + name, "Status: RUNNING", "Type: container", "Architecture: x86_64"]
    assert any(l.startswith("PID: ") for l in lines) and "Resources:" in lines

    _, err = cell(celld, "delete", name, ok=False)
    assert err == "Error: The instance is currently running, stop it first or pass --force\n"
    cell(celld, "delete", "-f", name)
    assert celld.get("/1.0/instances/" + name).status == 404
    _, err = cell(celld, "info", name, ok=False)
    assert err == "Error: Instance not found\n" or err.startswith("Error: ")


def test_init_generated_name_and_flags(celld, image):
    name = unique("i")
    out, _ = cell(celld, "init", "busybox", name, "-c", "user.note=a,b", "-c", "limits.memory=64MiB",
                  "-p", "default", "-s", "default", "-d", "root,size=1GiB")
    assert out == "Creating %s\n" % name
    inst = api(celld, "/1.0/instances/" + name)
    assert inst["status"] == "Stopped"
    assert inst["config"]["user.note"] == "a,b" and inst["config"]["limits.memory"] == "64MiB"
    assert inst["devices"]["root"] == {"type": "disk", "path": "/", "pool": "default", "size": "1GiB"}
    assert inst["profiles"] == ["default"]

    # by fingerprint prefix, with YAML on stdin, and with a name the daemon picks
    other = unique("y")
    cell(celld, "init", image[:12], other, input=b"config:\n  user.from: stdin\n")
    assert api(celld, "/1.0/instances/" + other)["config"]["user.from"] == "stdin"
    out, _ = cell(celld, "init", "busybox", "--ephemeral")
    assert out.startswith("Creating the instance\nInstance name is: ")
    picked = out.splitlines()[1].split(": ", 1)[1]
    assert api(celld, "/1.0/instances/" + picked)["ephemeral"] is True

    _, err = cell(celld, "init", "no-such-image", unique("x"), ok=False)
    assert err.startswith("Error: ")
    _, err = cell(celld, "init", "busybox", unique("x"), "-s", "no-such-pool", ok=False)
    assert err.startswith('Error: Failed loading storage pool "no-such-pool": ')


# ---- state changes -------------------------------------------------------------------------------

def test_start_stop_pause_restart(celld, image):
    a, b = unique("a"), unique("b")
    cell(celld, "init", "busybox", a)
    cell(celld, "init", "busybox", b)
    cell(celld, "start", a, "local:" + b)
    assert status(celld, a) == status(celld, b) == "Running"
    cell(celld, "pause", a)
    assert status(celld, a) == "Frozen"
    cell(celld, "start", a)   # start on a frozen instance unfreezes it
    assert status(celld, a) == "Running"
    cell(celld, "restart", a, "--force")
    assert status(celld, a) == "Running"
    cell(celld, "stop", a, "--force", "--timeout", "10")
    assert status(celld, a) == "Stopped"

    _, err = cell(celld, "stop", a, ok=False)
    assert err.startswith("Error: ") and "Try `cell info --show-log" not in err.splitlines()[0]
    # a batch reports each failure and fails as a whole, the others still done
    _, err = cell(celld, "stop", a, b, "-f", ok=False)
    assert err.startswith(a + ": error: ") and err.endswith("\nError: Some instances failed to stop\n")
    assert status(celld, b) == "Stopped"

    cell(celld, "start", "--all")
    assert status(celld, a) == status(celld, b) == "Running"
    cell(celld, "stop", "--all", "--force")
    assert status(celld, a) == status(celld, b) == "Stopped"
    _, err = cell(celld, "start", "no-such", ok=False)
    assert err.startswith("Error: ")


# ---- snapshots, copies, renames ------------------------------------------------------------------

def test_snapshot_restore_copy_rename(celld, image):
    require(celld, "/1.0/instances")
    name = unique("s")
    cell(celld, "init", "busybox", name, "-c", "user.v=1")
    cell(celld, "snapshot", name, "snap0")
    cell(celld, "snapshot", name)   # the daemon names it
    snaps = api(celld, "/1.0/instances/%s/snapshots" % name)
    assert len(snaps) == 2 and "/1.0/instances/%s/snapshots/snap0" % name in snaps
    out, _ = cell(celld, "list", name, "-c", "nS", "-f", "csv")
    assert csv_rows(out) == [[name, "2"]]
    out, _ = cell(celld, "info", name)
    assert "\nSnapshots:\n" in out and "| snap0 " in out

    cell(celld, "snapshot", name, "snap0", "--reuse")
    cell(celld, "move", "%s/snap0" % name, "%s/first" % name)
    assert celld.get("/1.0/instances/%s/snapshots/first" % name).status == 200
    out, _ = cell(celld, "config", "show", "%s/first" % name)
    assert "user.v: \"1\"" in out and "name: first" in out

    cell(celld, "config", "set", name, "user.v=2")
    cell(celld, "restore", name, "first")
    assert api(celld, "/1.0/instances/" + name)["config"]["user.v"] == "1"

    copy, from_snap = unique("k"), unique("f")
    cell(celld, "copy", name, copy, "-c", "user.copied=yes")
    got = api(celld, "/1.0/instances/" + copy)
    assert got["config"]["user.copied"] == "yes" and got["config"]["user.v"] == "1"
    assert len(api(celld, "/1.0/instances/%s/snapshots" % copy)) == 2
    cell(celld, "copy", "%s/first" % name, from_snap, "--instance-only", ok=False)
    cell(celld, "cp", "%s/first" % name, from_snap)
    assert api(celld, "/1.0/instances/" + from_snap)["config"]["user.v"] == "1"
    only = unique("o")
    cell(celld, "copy", name, only, "--instance-only")
    assert api(celld, "/1.0/instances/%s/snapshots" % only) == []

    renamed = unique("r")
    cell(celld, "rename", copy, renamed)
    assert celld.get("/1.0/instances/" + copy).status == 404
    assert status(celld, renamed) == "Stopped"
    _, err = cell(celld, "rename", renamed, from_snap, ok=False)
    assert err.startswith("Error: ")

    cell(celld, "delete", "%s/first" % name)
    assert len(api(celld, "/1.0/instances/%s/snapshots" % name)) == 1
    cell(celld, "delete", name, renamed, from_snap, only)
    for n in (name, renamed, from_snap, only):
        assert celld.get("/1.0/instances/" + n).status == 404


# ---- config and devices --------------------------------------------------------------------------

def test_config_and_devices(celld, image):
    name = unique("g")
    cell(celld, "init", "busybox", name)
    cell(celld, "config", "set", name, "user.a=1", "limits.memory=128MiB")
    cell(celld, "config", "set", name, "user.b", "two words")
    assert cell(celld, "config", "get", name, "user.b")[0] == "two words\n"
    assert cell(celld, "config", "get", name, "user.none")[0] == "\n"
    assert cell(celld, "config", "get", "--expanded", name, "user.a")[0] == "1\n"
    cell(celld, "config", "unset", name, "user.a")
    assert "user.a" not in api(celld, "/1.0/instances/" + name)["config"]
    _, err = cell(celld, "config", "unset", name, "user.a", ok=False)
    assert err == "Error: Can't unset key 'user.a', it's not currently set\n"
    _, err = cell(celld, "config", "set", name, "user.x=1", "broken", ok=False)
    assert err == "Error: Invalid key=value configuration: broken\n"

    out, _ = cell(celld, "config", "show", name)
    assert out.startswith("architecture: x86_64\nconfig:\n") and "  user.b: two words\n" in out
    out, _ = cell(celld, "config", "show", name, "--expanded")
    assert "  root:\n" in out   # the profile's root disk shows once expanded

    shown = cell(celld, "config", "show", name)[0].replace("user.b: two words", "user.b: edited")
    cell(celld, "config", "edit", name, input=shown.encode())
    assert api(celld, "/1.0/instances/" + name)["config"]["user.b"] == "edited"

    out, _ = cell(celld, "config", "device", "add", name, "tmp", "disk", "source=/tmp", "path=/mnt/tmp")
    assert out == "Device tmp added to %s\n" % name
    cell(celld, "config", "device", "set", name, "tmp", "readonly=true")
    assert cell(celld, "config", "device", "get", name, "tmp", "readonly")[0] == "true\n"
    assert cell(celld, "config", "device", "list", name)[0] == "tmp\n"
    assert cell(celld, "config", "device", "show", name)[0] == \
        "tmp:\n  path: /mnt/tmp\n  readonly: \"true\"\n  source: /tmp\n  type: disk\n"
    cell(celld, "config", "device", "unset", name, "tmp", "readonly")
    assert "readonly" not in api(celld, "/1.0/instances/" + name)["devices"]["tmp"]
    _, err = cell(celld, "config", "device", "remove", name, "root", ok=False)
    assert err == ("Error: Device from profile(s) cannot be removed from individual instance. "
                   "Override device or modify profile instead\n")
    out, _ = cell(celld, "config", "device", "override", name, "root", "size=2GiB")
    assert out == "Device root overridden for %s\n" % name
    assert api(celld, "/1.0/instances/" + name)["devices"]["root"]["size"] == "2GiB"
    out, _ = cell(celld, "config", "device", "remove", name, "tmp")
    assert out == "Device tmp removed from %s\n" % name
    assert "tmp" not in api(celld, "/1.0/instances/" + name)["devices"]


# ---- profiles -----------------------------------------------------------------------------------

def test_profiles(celld, image):
    require(celld, "/1.0/profiles")
    p, name = unique("p"), unique("c")
    assert cell(celld, "profile", "create", p)[0] == "Profile %s created\n" % p
    cell(celld, "profile", "set", p, "limits.cpu=1", "user.tag=x")
    assert cell(celld, "profile", "get", p, "user.tag")[0] == "x\n"
    cell(celld, "profile", "unset", p, "user.tag")
    cell(celld, "profile", "device", "add", p, "tmp", "disk", "source=/tmp", "path=/mnt")
    assert cell(celld, "profile", "device", "list", p)[0] == "tmp\n"
    out, _ = cell(celld, "profile", "show", p)
    assert out.startswith("config:\n  limits.cpu: \"1\"\ndescription: \"\"\ndevices:\n  tmp:\n")
    assert out.endswith("name: %s\nused_by: []\n" % p)
    cell(celld, "profile", "edit", p, input=b"description: edited\nconfig:\n  limits.cpu: 2\ndevices: {}\n")
    got = api(celld, "/1.0/profiles/" + p)
    assert got["description"] == "edited" and got["config"] == {"limits.cpu": "2"} and got["devices"] == {}

    cell(celld, "init", "busybox", name)
    assert cell(celld, "profile", "add", name, p)[0] == "Profile %s added to %s\n" % (p, name)
    assert api(celld, "/1.0/instances/" + name)["profiles"] == ["default", p]
    out, _ = cell(celld, "profile", "list", "-f", "csv")
    assert [p, "edited", "1"] in csv_rows(out)
    cell(celld, "profile", "remove", name, p)
    _, err = cell(celld, "profile", "remove", name, p, ok=False)
    assert err == "Error: Profile %s isn't currently applied to %s\n" % (p, name)
    cell(celld, "profile", "assign", name, "default,%s" % p)
    assert api(celld, "/1.0/instances/" + name)["profiles"] == ["default", p]
    _, err = cell(celld, "profile", "delete", p, ok=False)   # still in use
    cell(celld, "profile", "assign", name, "default")

    cp, renamed = unique("q"), unique("r")
    cell(celld, "profile", "copy", p, cp)
    assert api(celld, "/1.0/profiles/" + cp)["config"] == {"limits.cpu": "2"}
    assert cell(celld, "profile", "rename", cp, renamed)[0] == "Profile %s renamed to %s\n" % (cp, renamed)
    for x in (p, renamed):
        assert cell(celld, "profile", "delete", x)[0] == "Profile %s deleted\n" % x
        assert celld.get("/1.0/profiles/" + x).status == 404


# ---- storage ------------------------------------------------------------------------------------

def test_storage(celld):
    require(celld, "/1.0/storage-pools")
    out, _ = cell(celld, "storage", "list", "-f", "csv")
    assert any(r[0] == "default" and r[1] == "dir" for r in csv_rows(out))
    out, _ = cell(celld, "storage", "show", "default")
    assert "\nname: default\ndriver: dir\n" in out
    out, _ = cell(celld, "storage", "info", "default")
    assert out.startswith("info:\n  description: \"\"\n  driver: dir\n  name: default\n  space used: ")
    out, _ = cell(celld, "storage", "info", "default", "--bytes")
    assert "  total space: \"" in out

    pool, src = unique("pool"), os.path.join(celld.dir, "extra-pool")
    os.makedirs(src)
    out, _ = cell(celld, "storage", "create", pool, "dir", "source=" + src)
    assert out == "Storage pool %s created\n" % pool
    assert cell(celld, "storage", "get", pool, "source")[0] == src + "\n"
    cell(celld, "storage", "set", pool, "rsync.bwlimit", "10MB")
    assert api(celld, "/1.0/storage-pools/" + pool)["config"]["rsync.bwlimit"] == "10MB"
    assert cell(celld, "storage", "delete", pool)[0] == "Storage pool %s deleted\n" % pool
    assert celld.get("/1.0/storage-pools/" + pool).status == 404
    _, err = cell(celld, "storage", "delete", pool, ok=False)
    assert err.startswith("Error: ")


# ---- list: filters, one request, remotes ---------------------------------------------------------

def test_list_filters_and_one_request(celld, image):
    run, stopped = unique("run"), unique("stop")
    cell(celld, "launch", "busybox", run, "-c", "user.role=web")
    cell(celld, "init", "busybox", stopped)

    def names(*args):
        return sorted(r[0] for r in csv_rows(cell(celld, "list", "-c", "n", "-f", "csv", *args)[0]))
    assert names("status=running") == [run]
    assert names("status=stopped") == [stopped]
    assert names("u.role=web") == [run]
    assert names("run") == [run]                 # prefix
    assert names("^st.*") == [stopped]          # regex
    assert names("type=container") == sorted([run, stopped])

    _, err = cell(celld, "--debug", "list")
    gets = [l for l in err.splitlines() if l.startswith("DEBUG: GET ")]
    assert gets == ["DEBUG: GET /1.0/instances?recursion=2"]
    _, err = cell(celld, "--debug", "list", "-c", "ns")
    assert [l for l in err.splitlines() if l.startswith("DEBUG: GET ")] == ["DEBUG: GET /1.0/instances?recursion=1"]

    # the same daemon under another remote name: prefixes everywhere
    cell(celld, "remote", "add", "again", "unix://" + celld.sock)
    assert names("again:") == sorted([run, stopped])
    other = unique("rp")
    cell(celld, "launch", "again:busybox", "again:" + other)
    assert status(celld, other) == "Running"
    cell(celld, "stop", "again:" + other, "-f")
    cell(celld, "delete", "again:" + other)
    _, err = cell(celld, "list", "nowhere:", ok=False)
    assert err == "Error: The remote \"nowhere\" doesn't exist\n"


# ---- the same screens as lxc ---------------------------------------------------------------------

@pytest.mark.skipif(not shutil.which("lxc"), reason="Debian's lxd-client (lxc) is not installed")
def test_screens_match_lxc(celld, image):
    a, b = unique("m"), unique("n")
    cell(celld, "launch", "busybox", a)
    cell(celld, "init", "busybox", b, "-c", "user.comment=stopped one")
    cell(celld, "snapshot", b, "s0")
    env = dict(os.environ, LXD_DIR=celld.dir, HOME=os.path.join(celld.dir, "home"), TZ="UTC")

    def lxc(*args):
        p = subprocess.run(["lxc"] + list(args), capture_output=True, env=env, timeout=60)
        assert p.returncode == 0, p
        return p.stdout.decode()

    def same(*args):
        mine = cell(celld, *args)[0]
        theirs = lxc(*args)
        assert mine == theirs, "cell %s:\n%s\nlxc:\n%s" % (" ".join(args), mine, theirs)

    os.environ["TZ"] = "UTC"
    try:
        for cols in ("ns46tS", "nsacPt", "nsbfFPd,user.comment:NOTE", "nS,user.comment::4"):
            same("list", "-c", cols)
            same("list", "-c", cols, "-f", "csv")
            same("list", "-c", cols, "-f", "compact")
        same("list", "-c", "ns", b[:4])   # a name filter (lxc sends key=value ones to the daemon)
        same("info", b)
        same("config", "show", b)
        same("config", "show", b, "--expanded")
        same("profile", "list")
        same("profile", "show", "default")
        same("storage", "list")
        same("storage", "show", "default")
    finally:
        os.environ.pop("TZ", None)
