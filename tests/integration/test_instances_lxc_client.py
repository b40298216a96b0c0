"""Debian's LXD 5.0.2 client (`lxc`, LXD_DIR at celld) driving instances:
launch, list, info, stop/start/restart/pause, config set/get/unset, device
add/remove, profile assign, snapshot/restore, copy, move (rename), delete,
ephemeral containers."""
import json
import os
import shutil
import subprocess

import pytest

from cellenv import Celld
import images_fixture as fx
from images_fixture import unique

pytestmark = pytest.mark.skipif(shutil.which("lxc") is None, reason="no lxc client")


@pytest.fixture
def celld():
    d = Celld().start()
    try:
        if not fx.images_api(d):
            pytest.skip("no images API in this build: lxc launch needs it")
        fx.import_busybox(d)
        yield d
        rc = d.stop()
        assert rc == 0, "celld exited %s:\n%s" % (rc, d.stderr()[-4000:])
    finally:
        fx.cleanup_celld(d)


@pytest.fixture
def lxc(celld, tmp_path):
    env = dict(os.environ, HOME=str(tmp_path), LXD_CONF=str(tmp_path / "lxc"),
               LXD_DIR=celld.dir)

    def run(*args, check=True, input=None):
        p = subprocess.run(["lxc"] + list(args), capture_output=True, text=True, env=env,
                           input=input, timeout=120)
        if check:
            assert p.returncode == 0, "lxc %s: %s%s" % (" ".join(args), p.stdout, p.stderr)
        return p
    return run


def listing(lxc):
    return {i["name"]: i for i in json.loads(lxc("list", "--format", "json").stdout)}


def test_launch_list_info_stop_delete(celld, lxc):
    name = unique("lx")
    lxc("launch", "busybox", name)
    got = listing(lxc)[name]
    assert got["status"] == "Running" and got["state"]["pid"] > 0
    info = lxc("info", name).stdout
    assert "Status: RUNNING" in info and "Processes:" in info
    lxc("pause", name)
    assert listing(lxc)[name]["status"] == "Frozen"
    lxc("start", name)
    lxc("restart", name, "--force")
    assert listing(lxc)[name]["status"] == "Running"
    p = lxc("delete", name, check=False)
    assert p.returncode != 0   # running
    lxc("stop", name, "--force")
    assert listing(lxc)[name]["status"] == "Stopped"
    lxc("delete", name)
    assert name not in listing(lxc)


def test_config_devices_and_profiles(celld, lxc, tmp_path):
    name = unique("cf")
    lxc("launch", "busybox", name)
    lxc("config", "set", name, "limits.memory", "64MiB")
    assert lxc("config", "get", name, "limits.memory").stdout.strip() == "64MiB"
    p = lxc("config", "set", name, "limits.memory", "plenty", check=False)
    assert p.returncode != 0
    lxc("config", "unset", name, "limits.memory")
    assert lxc("config", "get", name, "limits.memory").stdout.strip() == ""
    share = tmp_path / "share"
    share.mkdir()
    (share / "f").write_text("shared\n")
    os.chmod(tmp_path, 0o755)
    lxc("config", "device", "add", name, "share", "disk", "source=%s" % share,
        "path=/mnt/share")
    assert fx.attach(celld, name, "/bin/cat", "/mnt/share/f").stdout == "shared\n"
    lxc("config", "device", "remove", name, "share")
    assert fx.attach(celld, name, "/bin/cat", "/mnt/share/f", check=False).returncode != 0
    prof = unique("pr")
    lxc("profile", "create", prof)
    lxc("profile", "set", prof, "user.from-profile", "yes")
    lxc("profile", "add", name, prof)
    shown = lxc("config", "show", name, "--expanded").stdout
    assert "user.from-profile" in shown and prof in shown
    lxc("profile", "remove", name, prof)
    assert "user.from-profile" not in lxc("config", "show", name, "--expanded").stdout
    lxc("stop", name, "--force")


def test_snapshot_restore_copy_move(celld, lxc):
    name = unique("sn")
    lxc("init", "busybox", name)
    lxc("snapshot", name, "s0")
    info = lxc("info", name).stdout
    assert "Snapshots:" in info and "s0" in info
    lxc("config", "set", name, "user.after", "1")
    lxc("restore", name, "s0")
    assert lxc("config", "get", name, "user.after").stdout.strip() == ""
    copy, moved = unique("cp"), unique("mv")
    lxc("copy", name, copy)
    assert "s0" in lxc("info", copy).stdout
    lxc("move", copy, moved)
    names = listing(lxc)
    assert moved in names and copy not in names
    lxc("start", moved)
    lxc("delete", moved, "--force")
    lxc("delete", name)
    assert listing(lxc) == {}


def test_ephemeral(celld, lxc):
    name = unique("ep")
    lxc("launch", "busybox", name, "--ephemeral")
    assert listing(lxc)[name]["ephemeral"] is True
    lxc("stop", name, "--force")
    assert name not in listing(lxc)


def test_publish_and_launch_from_it(celld, lxc):
    name, again = unique("pub"), unique("pub2")
    lxc("init", "busybox", name)
    lxc("snapshot", name, "s0")   # without the file: a different image
    with open(os.path.join(fx.rootfs_path(celld, name), "root", "published"), "w") as f:
        f.write("yes")
    alias = unique("img")
    lxc("publish", name, "--alias", alias)
    lxc("publish", "%s/s0" % name, "--alias", alias + "-snap")
    lxc("launch", alias, again)
    assert fx.attach(celld, again, "/bin/cat", "/root/published").stdout == "yes"
    assert celld.get("/1.0/instances/" + again).metadata["config"]["image.os"] == "busybox"
    lxc("delete", again, "--force")
    lxc("delete", name)
