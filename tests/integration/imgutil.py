"""Test images built at test time from Debian's busybox-static, and hostile
tarballs, for the image store tests (test_images*.py) and anyone needing an
image to import.

build_unified(dir, compression) -> path of metadata.yaml + rootfs/ + templates/
build_split(dir, meta_comp, rootfs_comp) -> (metadata path, rootfs path)
Compressions: none, gzip, bzip2, xz, lzma, zstd; rootfs also squashfs.
"""
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import time

BUSYBOX = shutil.which("busybox") or "/bin/busybox"

METADATA = """architecture: amd64
creation_date: 1700000000
expiry_date: 1900000000
properties:
  os: busybox
  release: "1.36"
  description: BusyBox test image
templates:
  /etc/hostname:
    when:
      - create
      - copy
    template: hostname.tpl
"""

APPLETS = ["sh", "ls", "cat", "echo", "true", "init"]


def sha256_file(*paths):
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _add_bytes(tf, name, data, mode=0o644, mtime=None):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = mode
    ti.mtime = mtime or 1700000000
    tf.addfile(ti, io.BytesIO(data))


def _add_dir(tf, name, mode=0o755):
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    ti.mode = mode
    ti.mtime = 1700000000
    tf.addfile(ti)


def _add_rootfs(tf, prefix, extra=b""):
    """busybox + applet symlinks + a few files, under prefix ("rootfs/" or "")."""
    if prefix:
        _add_dir(tf, prefix.rstrip("/"))
    for d in ("bin", "etc", "dev", "tmp", "sbin"):
        _add_dir(tf, prefix + d)
    with open(BUSYBOX, "rb") as f:
        _add_bytes(tf, prefix + "bin/busybox", f.read() + extra, 0o755)
    for a in APPLETS:
        ti = tarfile.TarInfo(prefix + "bin/" + a)
        ti.type = tarfile.SYMTYPE
        ti.linkname = "busybox"
        ti.mtime = 1700000000
        tf.addfile(ti)
    _add_bytes(tf, prefix + "etc/hostname", b"busybox\n")
    _add_bytes(tf, prefix + "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    ti = tarfile.TarInfo(prefix + "dev/null")
    ti.type = tarfile.CHRTYPE
    ti.devmajor, ti.devminor = 1, 3
    ti.mode = 0o666
    tf.addfile(ti)


def _compress(raw_path, compression):
    """Compress a plain tar file in place; returns the new path."""
    if compression in (None, "none"):
        return raw_path
    tools = {"gzip": (["gzip", "-n", "-6"], ".gz"), "bzip2": (["bzip2"], ".bz2"),
             "xz": (["xz", "-1", "-T0"], ".xz"), "lzma": (["xz", "--format=lzma"], ".lzma"),
             "zstd": (["zstd", "-q", "--rm"], ".zst")}
    cmd, ext = tools[compression]
    subprocess.run(cmd + ["-f", raw_path], check=True)
    return raw_path + ext


def build_unified(directory, compression="gzip", name="busybox", extra=b"", metadata=METADATA):
    path = os.path.join(directory, name + ".tar")
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        _add_bytes(tf, "metadata.yaml", metadata.encode())
        _add_rootfs(tf, "rootfs/", extra)
        _add_dir(tf, "templates")
        _add_bytes(tf, "templates/hostname.tpl", b"{{ container.name }}\n")
    return _compress(path, compression)


def build_split(directory, meta_compression="xz", rootfs_compression="gzip", name="split", extra=b""):
    meta = os.path.join(directory, name + "-meta.tar")
    with tarfile.open(meta, "w", format=tarfile.PAX_FORMAT) as tf:
        _add_bytes(tf, "metadata.yaml", METADATA.encode())
        _add_dir(tf, "templates")
        _add_bytes(tf, "templates/hostname.tpl", b"{{ container.name }}\n")
    meta = _compress(meta, meta_compression)
    if rootfs_compression == "squashfs":
        tree = os.path.join(directory, name + "-tree")
        os.makedirs(os.path.join(tree, "bin"), exist_ok=True)
        os.makedirs(os.path.join(tree, "etc"), exist_ok=True)
        shutil.copy(BUSYBOX, os.path.join(tree, "bin", "busybox"))
        if extra:
            with open(os.path.join(tree, "bin", "busybox"), "ab") as f:
                f.write(extra)
        for a in APPLETS:
            os.symlink("busybox", os.path.join(tree, "bin", a))
        with open(os.path.join(tree, "etc", "hostname"), "w") as f:
            f.write("busybox\n")
        rootfs = os.path.join(directory, name + "-rootfs.squashfs")
        subprocess.run(["mksquashfs", tree, rootfs, "-quiet", "-noappend", "-all-root"], check=True,
                       stdout=subprocess.DEVNULL)
        shutil.rmtree(tree)
        return meta, rootfs
    rootfs = os.path.join(directory, name + "-rootfs.tar")
    with tarfile.open(rootfs, "w", format=tarfile.PAX_FORMAT) as tf:
        _add_rootfs(tf, "", extra)
    return meta, _compress(rootfs, rootfs_compression)


def hostile(directory, kind):
    """A unified image that must be refused; returns its path."""
    path = os.path.join(directory, "bad-%s.tar" % kind)
    if kind == "not-a-tarball":
        with open(path, "wb") as f:
            f.write(b"This is a text file, not a tarball.\n" * 100)
        return path
    if kind == "truncated":
        good = build_unified(directory, "none", name="trunc-src")
        with open(good, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[:len(data) // 2])
        return path
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        if kind == "bad-yaml":
            _add_bytes(tf, "metadata.yaml", b"architecture: [x86_64\ncreation_date: :\n")
        elif kind == "no-architecture":
            _add_bytes(tf, "metadata.yaml", b"creation_date: 1700000000\n")
        elif kind == "no-creation-date":
            _add_bytes(tf, "metadata.yaml", b"architecture: x86_64\n")
        elif kind != "no-metadata":
            _add_bytes(tf, "metadata.yaml", METADATA.encode())
        _add_rootfs(tf, "rootfs/")
        if kind == "traversal":
            _add_bytes(tf, "rootfs/../../../../tmp/cell-pwned", b"x")
        elif kind == "absolute":
            _add_bytes(tf, "/tmp/cell-pwned", b"x")
        elif kind == "block-device":
            ti = tarfile.TarInfo("rootfs/dev/sda")
            ti.type = tarfile.BLKTYPE
            ti.devmajor, ti.devminor = 8, 0
            tf.addfile(ti)
        elif kind == "char-device":
            ti = tarfile.TarInfo("rootfs/dev/mem")
            ti.type = tarfile.CHRTYPE
            ti.devmajor, ti.devminor = 1, 1
            tf.addfile(ti)
        elif kind == "hardlink-outside":
            ti = tarfile.TarInfo("rootfs/etc/shadow-link")
            ti.type = tarfile.LNKTYPE
            ti.linkname = "../../etc/shadow"
            tf.addfile(ti)
        elif kind == "vm":
            _add_bytes(tf, "rootfs.img", b"QFI\xfb")
    return path


def bomb(directory, size):
    """gzip'd tarball whose rootfs holds `size` bytes of zeros (a few hundred
    KiB on disk per 100 MiB)."""
    raw = os.path.join(directory, "bomb.tar")
    with tarfile.open(raw, "w", format=tarfile.PAX_FORMAT) as tf:
        _add_bytes(tf, "metadata.yaml", METADATA.encode())
        _add_dir(tf, "rootfs")
        ti = tarfile.TarInfo("rootfs/zeros")
        ti.size = size
        with open("/dev/zero", "rb") as z:
            tf.addfile(ti, z)
    return _compress(raw, "gzip")


def wait_until(fn, timeout=10, step=0.02):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if fn():
            return True
        time.sleep(step)
    return fn()
