"""Debian's LXD client (`lxc`, LXD 5.0.2) against celld's image store:
import (unified and split: Go sends both chunked), list, info, show, edit,
alias create/rename/delete/list, export and delete, with LXD_DIR at celld.
"""
import json
import os
import shutil
import subprocess
import tempfile

import pytest

import imgutil

LXC = shutil.which("lxc")
pytestmark = pytest.mark.skipif(not LXC, reason="Debian's lxd-client (lxc) is not installed")


@pytest.fixture(scope="module")
def work():
    d = tempfile.mkdtemp(prefix="cell-lxc-img-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def lxc(celld, *args, input=None, check=True, cwd=None):
    env = dict(os.environ, LXD_DIR=celld.dir, LXD_CONF=os.path.join(celld.dir, "lxc-conf"), HOME=celld.dir)
    p = subprocess.run([LXC] + list(args), input=input, capture_output=True, env=env, timeout=120, cwd=cwd)
    if check and p.returncode != 0:
        raise AssertionError("lxc %s failed (%d): %s %s" % (" ".join(args), p.returncode,
                                                           p.stdout.decode(), p.stderr.decode()))
    return p


def test_import_list_info_delete(celld, work):
    path = imgutil.build_unified(work, "xz", name="lxc-u")
    fp = imgutil.sha256_file(path)
    out = lxc(celld, "image", "import", path, "--alias", "bb", "--public", "flavour=tiny").stdout.decode()
    assert "Image imported with fingerprint: " + fp in out
    img = celld.get("/1.0/images/" + fp).metadata
    assert img["public"] is True and img["properties"]["flavour"] == "tiny"
    assert img["filename"] == os.path.basename(path)
    assert img["aliases"] == [{"name": "bb", "description": ""}]
    listed = json.loads(lxc(celld, "image", "list", "--format", "json").stdout)
    assert [i["fingerprint"] for i in listed] == [fp]
    table = lxc(celld, "image", "list", "flavour=tiny", "-c", "lfps", "--format", "csv").stdout.decode()
    assert table.strip().startswith("bb,%s,yes," % fp[:12])
    assert lxc(celld, "image", "list", "flavour=huge", "--format", "csv").stdout.strip() == b""
    info = lxc(celld, "image", "info", "bb").stdout.decode()
    assert "Fingerprint: " + fp in info and "Architecture: x86_64" in info
    assert "    - bb" in info and "Public: yes" in info and "Expires: 2030/03/17 17:46 UTC" in info
    p = lxc(celld, "image", "import", path, check=False)
    assert p.returncode != 0 and b"already exists" in p.stderr
    lxc(celld, "image", "delete", "bb")
    assert celld.get("/1.0/images").metadata == []
    assert sorted(os.listdir(os.path.join(celld.dir, "images"))) == ["tmp"]


def test_import_beyond_100_mib(celld, work):
    """lxc sends the file chunked; libwebsockets alone would cut it at 100 MiB."""
    path = imgutil.build_unified(work, "none", name="lxc-big", extra=os.urandom(130 << 20))
    assert os.path.getsize(path) > 130 << 20
    fp = imgutil.sha256_file(path)
    out = lxc(celld, "image", "import", path, "--alias", "big").stdout.decode()
    assert "Image imported with fingerprint: " + fp in out
    img = celld.get("/1.0/images/" + fp).metadata
    assert img["size"] == os.path.getsize(path)
    assert imgutil.sha256_file(os.path.join(celld.dir, "images", fp)) == fp
    # The connection that carried it closed; the next command opens another.
    lxc(celld, "image", "delete", "big")
    assert celld.get("/1.0/images").metadata == []
    os.unlink(path)


def test_split_import_and_export(celld, work):
    meta, rootfs = imgutil.build_split(work, "none", "xz", name="lxc-s")
    fp = imgutil.sha256_file(meta, rootfs)
    out = lxc(celld, "image", "import", meta, rootfs, "--alias", "split/one").stdout.decode()
    assert fp in out
    exdir = os.path.join(work, "lxc-export")
    shutil.rmtree(exdir, ignore_errors=True)
    os.makedirs(exdir)
    lxc(celld, "image", "export", "split/one", exdir + "/")
    assert sorted(os.listdir(exdir)) == sorted(["meta-%s.tar" % fp, "%s.tar.xz" % fp])
    assert open(os.path.join(exdir, "meta-%s.tar" % fp), "rb").read() == open(meta, "rb").read()
    assert open(os.path.join(exdir, "%s.tar.xz" % fp), "rb").read() == open(rootfs, "rb").read()
    # and a unified one, named after the server's Content-Disposition
    upath = imgutil.build_unified(work, "gzip", name="lxc-u2")
    ufp = imgutil.sha256_file(upath)
    lxc(celld, "image", "import", upath)
    lxc(celld, "image", "export", ufp[:12], exdir + "/")
    assert open(os.path.join(exdir, ufp + ".tar.gz"), "rb").read() == open(upath, "rb").read()


def test_aliases(celld, work):
    path = imgutil.build_unified(work, "gzip", name="lxc-a")
    fp = imgutil.sha256_file(path)
    lxc(celld, "image", "import", path)
    lxc(celld, "image", "alias", "create", "first", fp[:10])
    lxc(celld, "image", "alias", "create", "deb/12", fp)
    p = lxc(celld, "image", "alias", "create", "first", fp, check=False)
    assert p.returncode != 0 and b"already exists" in p.stderr
    lxc(celld, "image", "alias", "rename", "first", "second")
    rows = lxc(celld, "image", "alias", "list", "--format", "csv").stdout.decode().split()
    assert sorted(rows) == sorted(["deb/12,%s,CONTAINER," % fp[:12], "second,%s,CONTAINER," % fp[:12]])
    lxc(celld, "image", "alias", "delete", "second")
    lxc(celld, "image", "alias", "delete", "deb/12")
    assert celld.get("/1.0/images/aliases").metadata == []


def test_show_and_edit(celld, work):
    path = imgutil.build_unified(work, "zstd", name="lxc-e")
    fp = imgutil.sha256_file(path)
    lxc(celld, "image", "import", path)
    show = lxc(celld, "image", "show", fp).stdout.decode()
    assert "auto_update: false" in show and "os: busybox" in show and "- default" in show
    lxc(celld, "image", "edit", fp, input=b"auto_update: true\nproperties:\n  os: edited\npublic: true\n")
    img = celld.get("/1.0/images/" + fp).metadata
    assert img["auto_update"] is True and img["public"] is True and img["properties"] == {"os": "edited"}
    lxc(celld, "image", "set-property", fp, "extra", "value")
    assert lxc(celld, "image", "get-property", fp, "extra").stdout.strip() == b"value"


def test_bad_image_error_reaches_lxc(celld, work):
    for kind, needle in (("traversal", b"'..'"), ("no-metadata", b"metadata.yaml"),
                         ("block-device", b"block device")):
        p = lxc(celld, "image", "import", imgutil.hostile(work, kind), check=False)
        assert p.returncode != 0 and needle in p.stderr, p.stderr
    assert celld.get("/1.0/images").metadata == []
    tmp = os.path.join(celld.dir, "images", "tmp")
    assert imgutil.wait_until(lambda: os.listdir(tmp) == [], 10), os.listdir(tmp)


def test_refresh_local_image(celld, work):
    path = imgutil.build_unified(work, "gzip", name="lxc-r")
    lxc(celld, "image", "import", path, "--alias", "r")
    p = lxc(celld, "image", "refresh", "r", check=False)
    assert p.returncode != 0 and b"no update source" in p.stderr
