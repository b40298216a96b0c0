"""GET /1.0/images is answered from a snapshot that follows the image tables
image by image (daemon/images_list.c).  Every test here reads the list
first, so the snapshot exists, then changes the store one way and checks
that the very next list shows the change: the list with recursion=1, the
URL list, a ?filter= and an untrusted client's view, against what
GET /1.0/images/<fp> says about each image.
"""
import os
import shutil
import tempfile
import threading
import urllib.parse

import pytest

import imgutil
import images_fixture as fx
from cellenv import do_request


@pytest.fixture(scope="module")
def work():
    d = tempfile.mkdtemp(prefix="cell-imglist-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def images(work):
    """Three distinct unified images (one per fingerprint)."""
    return [imgutil.build_unified(work, "none", name="lc%d" % i, extra=b"%d" % i) for i in range(3)]


# ---- helpers -----------------------------------------------------------------------------------

def listed(celld, query=""):
    r = celld.get("/1.0/images?recursion=1" + query)
    assert r.status == 200, r
    return {i["fingerprint"]: i for i in r.metadata}


def assert_consistent(celld):
    """Both lists and every image's own GET agree; returns the listed images."""
    full = listed(celld)
    urls = celld.get("/1.0/images").metadata
    assert sorted(urls) == sorted("/1.0/images/" + fp for fp in full)
    assert list(full) == sorted(full)               # sorted by fingerprint
    for fp, img in full.items():
        assert celld.get("/1.0/images/" + fp).metadata == img
    return full


def import_image(celld, path, headers=None):
    h = {"Content-Type": "application/octet-stream"}
    h.update(headers or {})
    with open(path, "rb") as f:
        r = celld.request("POST", "/1.0/images", body=f.read(), headers=h)
    op = fx.wait(celld, r)
    return op["metadata"]["fingerprint"]


def alias_names(img):
    return sorted(a["name"] for a in img["aliases"])


def filtered(celld, expr):
    return sorted(listed(celld, "&filter=" + urllib.parse.quote(expr)))


@pytest.fixture
def two(celld, images):
    """Two images in the store and a list read once (the snapshot exists)."""
    a, b = import_image(celld, images[0]), import_image(celld, images[1])
    assert sorted(assert_consistent(celld)) == sorted([a, b])
    return a, b


# ---- each kind of change -------------------------------------------------------------------------

def test_import_and_delete(celld, images, two):
    a, b = two
    c = import_image(celld, images[2], {"X-LXD-properties": "os=third"})
    full = assert_consistent(celld)
    assert sorted(full) == sorted([a, b, c]) and full[c]["properties"]["os"] == "third"
    assert filtered(celld, "properties.os eq third") == [c]
    fx.wait(celld, celld.request("DELETE", "/1.0/images/" + a))
    assert sorted(assert_consistent(celld)) == sorted([b, c])
    # Deleted, then imported again: a new row for the same fingerprint.
    assert import_image(celld, images[0]) == a
    assert sorted(assert_consistent(celld)) == sorted([a, b, c])


def test_put_and_patch(celld, two):
    a, b = two
    r = celld.request("PATCH", "/1.0/images/" + a, {"properties": {"os": "patched", "k": "v"}})
    assert r.status == 200, r
    full = assert_consistent(celld)
    assert full[a]["properties"]["os"] == "patched" and full[a]["properties"]["k"] == "v"
    assert full[b]["properties"]["os"] == "busybox"
    assert filtered(celld, "properties.os eq patched") == [a]
    assert filtered(celld, "properties.os eq busybox") == [b]
    r = celld.request("PUT", "/1.0/images/" + a, {"properties": {"only": "this"}, "auto_update": True,
                                                  "profiles": [], "expires_at": "2031-01-02T03:04:05Z"})
    assert r.status == 200, r
    img = assert_consistent(celld)[a]
    assert img["properties"] == {"only": "this"} and img["auto_update"] is True
    assert img["profiles"] == [] and img["expires_at"] == "2031-01-02T03:04:05Z"
    assert filtered(celld, "properties.os eq patched") == []
    # A refused change changes nothing.
    assert celld.request("PATCH", "/1.0/images/" + a, {"profiles": ["nope"]}).status == 400
    assert assert_consistent(celld)[a] == img


def test_alias_changes(celld, two):
    a, b = two
    assert celld.request("POST", "/1.0/images/aliases", {"name": "al", "target": a,
                                                         "description": "d"}).status == 201
    full = assert_consistent(celld)
    assert full[a]["aliases"] == [{"name": "al", "description": "d"}] and full[b]["aliases"] == []
    # Retarget: the alias leaves one image and joins the other.
    assert celld.request("PUT", "/1.0/images/aliases/al", {"target": b, "description": "moved"}).status == 200
    full = assert_consistent(celld)
    assert full[a]["aliases"] == [] and full[b]["aliases"] == [{"name": "al", "description": "moved"}]
    assert celld.request("PATCH", "/1.0/images/aliases/al", {"description": "patched"}).status == 200
    assert assert_consistent(celld)[b]["aliases"] == [{"name": "al", "description": "patched"}]
    assert celld.request("POST", "/1.0/images/aliases/al", {"name": "renamed"}).status == 201
    assert alias_names(assert_consistent(celld)[b]) == ["renamed"]
    assert celld.request("POST", "/1.0/images/aliases", {"name": "second", "target": b}).status == 201
    assert alias_names(assert_consistent(celld)[b]) == ["renamed", "second"]
    assert celld.request("DELETE", "/1.0/images/aliases/renamed").status == 200
    assert alias_names(assert_consistent(celld)[b]) == ["second"]
    # Deleting the image takes its aliases along; the other image is untouched.
    fx.wait(celld, celld.request("DELETE", "/1.0/images/" + b))
    full = assert_consistent(celld)
    assert list(full) == [a] and celld.get("/1.0/images/aliases").metadata == []


def test_import_with_aliases_and_publish(celld, images, work):
    assert assert_consistent(celld) == {}
    out = celld.cell("image", "import", images[0], "--alias", "i1", "--alias", "i2").stdout.decode()
    fp = out.split()[-1]
    assert alias_names(assert_consistent(celld)[fp]) == ["i1", "i2"]
    tree = os.path.join(work, "pubtree")
    shutil.rmtree(tree, ignore_errors=True)
    os.makedirs(os.path.join(tree, "etc"))
    with open(os.path.join(tree, "etc", "hostname"), "w") as f:
        f.write("pub\n")
    op = fx.wait(celld, celld.request("POST", "/internal/testing/images/publish",
                                      {"rootfs": tree, "properties": {"os": "published"},
                                       "aliases": [{"name": "pub", "description": "p"}]}))
    pfp = op["metadata"]["fingerprint"]
    full = assert_consistent(celld)
    assert full[pfp]["aliases"] == [{"name": "pub", "description": "p"}]
    assert filtered(celld, "properties.os eq published") == [pfp]


def test_last_used_and_cached_expiry(celld, work, two):
    a, b = two
    out = os.path.join(work, "unpacked")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    fx.wait(celld, celld.request("POST", "/internal/testing/images/unpack", {"fingerprint": a, "rootfs": out}))
    shutil.rmtree(out)
    full = assert_consistent(celld)
    assert full[a]["last_used_at"] != "0001-01-01T00:00:00Z"
    assert full[b]["last_used_at"] == "0001-01-01T00:00:00Z"
    r = celld.request("PATCH", "/internal/testing/images/" + b, {"cached": True,
                                                                 "last_used_at": "2020-01-01T00:00:00Z"})
    assert r.status == 200, r
    assert assert_consistent(celld)[b]["cached"] is True
    assert celld.request("PATCH", "/1.0", {"config": {"images.remote_cache_expiry": "10"}}).status == 200
    op = fx.wait(celld, celld.request("POST", "/internal/testing/images/prune"))
    assert op["metadata"]["pruned"] == 1
    assert list(assert_consistent(celld)) == [a]


def test_profile_rename_rewrites_image_profiles(celld, two):
    """A profile rename rewrites images.profiles from profiles.c: no image
    function runs, the list must follow anyway."""
    a, b = two
    assert celld.request("POST", "/1.0/profiles", {"name": "extra"}).status in (200, 201)
    assert celld.request("PATCH", "/1.0/images/" + a, {"profiles": ["default", "extra"]}).status == 200
    assert assert_consistent(celld)[a]["profiles"] == ["default", "extra"]
    assert celld.request("POST", "/1.0/profiles/extra", {"name": "renamed"}).status in (200, 201)
    full = assert_consistent(celld)
    assert full[a]["profiles"] == ["default", "renamed"] and full[b]["profiles"] == ["default"]


def test_untrusted_view_follows_public(celld, two):
    a, b = two
    celld.enable_https()

    def untrusted():
        c = celld.https()
        try:
            r = do_request(c, "GET", "/1.0/images?recursion=1")
        finally:
            c.close()
        assert r.status == 200, r
        return sorted(i["fingerprint"] for i in r.metadata)
    assert untrusted() == []
    assert celld.request("PATCH", "/1.0/images/" + b, {"public": True}).status == 200
    assert untrusted() == [b]
    assert celld.request("PATCH", "/1.0/images/" + b, {"public": False}).status == 200
    assert untrusted() == []


def test_restart_then_changes(celld, images, two):
    """After a restart (and the reconciliation at start) the new process
    follows changes from its first list on."""
    a, b = two
    before = assert_consistent(celld)
    assert celld.stop() == 0
    with open(os.path.join(celld.dir, "images", b), "r+b") as f:
        f.truncate(10)                          # damaged: dropped at start
    celld.start()
    assert assert_consistent(celld) == {a: before[a]}
    assert celld.request("POST", "/1.0/images/aliases", {"name": "after", "target": a}).status == 201
    assert alias_names(assert_consistent(celld)[a]) == ["after"]
    c = import_image(celld, images[2])
    assert sorted(assert_consistent(celld)) == sorted([a, c])


def test_many_changes_at_once(celld, work):
    """More images changed between two lists than the snapshot follows one
    by one, and writers racing readers: the list settles on the truth."""
    fps = [import_image(celld, imgutil.build_unified(work, "none", name="m%d" % i, extra=b"m%d" % i))
           for i in range(40)]
    assert_consistent(celld)
    for i, fp in enumerate(fps):
        assert celld.request("PATCH", "/1.0/images/" + fp, {"properties": {"n": str(i)}}).status == 200
    full = assert_consistent(celld)
    assert all(full[fp]["properties"]["n"] == str(i) for i, fp in enumerate(fps))

    stop, errors = threading.Event(), []

    def reader():
        while not stop.is_set():
            r = celld.get("/1.0/images?recursion=1")
            if r.status != 200 or len(r.metadata) != len(fps):
                errors.append(r)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for round_ in range(3):
            for i, fp in enumerate(fps[:10]):
                celld.request("PATCH", "/1.0/images/" + fp, {"properties": {"r": str(round_)}})
                celld.request("POST", "/1.0/images/aliases", {"name": "r%d-%d" % (round_, i), "target": fp})
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    full = assert_consistent(celld)
    for i, fp in enumerate(fps[:10]):
        assert full[fp]["properties"]["r"] == "2"
        assert alias_names(full[fp]) == sorted("r%d-%d" % (k, i) for k in range(3))


def test_container_create_and_publish(celld):
    """The instances code's writes: last_used_at when a container is made
    from an image, a new image when one is published."""
    fp = fx.import_busybox(celld)
    assert assert_consistent(celld)[fp]["last_used_at"] == "0001-01-01T00:00:00Z"
    name = fx.unique("lc")
    fx.create_busybox(celld, name)
    assert assert_consistent(celld)[fp]["last_used_at"] != "0001-01-01T00:00:00Z"
    op = fx.wait(celld, celld.request("POST", "/1.0/images", {
        "source": {"type": "instance", "name": name}, "aliases": [{"name": "published"}],
        "properties": {"os": "from-container"}}), timeout=300)
    pfp = op["metadata"]["fingerprint"]
    full = assert_consistent(celld)
    assert sorted(full) == sorted([fp, pfp])
    assert alias_names(full[pfp]) == ["published"]
    assert filtered(celld, "properties.os eq from-container") == [pfp]
    fx.wait(celld, celld.request("DELETE", "/1.0/instances/" + name))
