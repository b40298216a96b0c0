"""LXD's own clients against celld: Debian's `lxc` (lxd-client 5.0.2) with
LXD_DIR pointing at the state dir, and over HTTPS as a remote; pylxd 2.2.10
over the unix socket and over HTTPS."""
import json
import os
import queue
import subprocess
import threading
import time
import uuid
import warnings
from urllib.parse import quote

import pytest
import yaml

from cellenv import (Celld, cert_fingerprint, enable_https_tls, free_port,
                     make_client_cert, stop_checked, wait_https, wait_port)

pytestmark = pytest.mark.skipif(
    subprocess.run(["which", "lxc"], capture_output=True).returncode != 0,
    reason="lxd-client is not installed")


@pytest.fixture
def celld(tmp_path_factory):
    # HTTPS with client certificates: see cellenv.KNOWN_LEAKS.
    d = Celld().start()
    try:
        yield d
        stop_checked(d)
    finally:
        d.cleanup()


@pytest.fixture
def lxc(celld, tmp_path):
    """Run `lxc` against this celld, with its own HOME and LXD_CONF."""
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), LXD_CONF=str(home / "lxc"), LXD_DIR=celld.dir)
    env.pop("LXD_REMOTE", None)

    def run(*args, check=True, timeout=60):
        p = subprocess.run(["lxc"] + list(args), capture_output=True, text=True, env=env,
                           timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError("lxc %s failed (%d):\n%s%s" % (" ".join(args), p.returncode,
                                                               p.stdout, p.stderr))
        return p
    run.conf = str(home / "lxc")
    return run


def set_password(celld):
    pw = "lxc-pw-" + uuid.uuid4().hex[:10]
    assert celld.request("PATCH", "/1.0", {"config": {"core.trust_password": pw}}).status == 200
    return pw


# ---- lxc over the unix socket -----------------------------------------------------------------

def test_lxc_info(celld, lxc):
    info = yaml.safe_load(lxc("info").stdout)
    assert info["auth"] == "trusted"
    assert info["api_version"] == "1.0"
    env = info["environment"]
    assert env["server"] == "celld"
    assert env["driver"] == "lxc"
    assert env["server_pid"] == celld.proc.pid
    assert env["certificate_fingerprint"] == cert_fingerprint(os.path.join(celld.dir, "server.crt"))
    assert info["api_extensions"] == celld.get("/1.0").metadata["api_extensions"]


def test_lxc_query(celld, lxc):
    md = json.loads(lxc("query", "/1.0").stdout)
    assert md["environment"]["server"] == "celld" and md["auth"] == "trusted"
    assert json.loads(lxc("query", "/").stdout) == ["/1.0"]
    assert json.loads(lxc("query", "/1.0/certificates").stdout) == []
    # lxc query prints nothing for an empty {} metadata: ask for the raw answer.
    ops = json.loads(lxc("query", "--raw", "/1.0/operations").stdout)
    assert ops["status_code"] == 200 and ops["metadata"] == {}
    lxc("query", "-X", "PATCH", "/1.0", "--data", json.dumps({"config": {"user.q": "1"}}))
    assert celld.get("/1.0").metadata["config"] == {"user.q": "1"}
    p = lxc("query", "/1.0/nope", check=False)
    assert p.returncode != 0 and "not found" in p.stderr.lower(), p.stderr
    p = lxc("query", "-X", "PATCH", "/1.0", "--data", '{"config": {"no.such": "1"}}', check=False)
    assert p.returncode != 0 and "no.such" in p.stderr, p.stderr
    assert celld.get("/1.0").metadata["config"] == {"user.q": "1"}


def test_lxc_config_set_get_unset(celld, lxc):
    port = free_port()
    addr = "127.0.0.1:%d" % port
    lxc("config", "set", "core.https_address", addr)
    assert lxc("config", "get", "core.https_address").stdout.strip() == addr
    assert wait_https(port)
    assert yaml.safe_load(lxc("config", "show").stdout)["config"]["core.https_address"] == addr

    lxc("config", "set", "core.trust_password", "s3cret-" + uuid.uuid4().hex[:6])
    assert lxc("config", "get", "core.trust_password").stdout.strip() == "true"
    lxc("config", "set", "images.remote_cache_expiry", "4")
    assert lxc("config", "get", "images.remote_cache_expiry").stdout.strip() == "4"

    for key, value in (("images.remote_cache_expiry", "abc"), ("no.such.key", "1"),
                       ("core.https_address", "nonsense:99999")):
        p = lxc("config", "set", key, value, check=False)
        assert p.returncode != 0 and key in p.stderr, p.stderr
    assert lxc("config", "get", "images.remote_cache_expiry").stdout.strip() == "4"

    lxc("config", "unset", "core.https_address")
    assert lxc("config", "get", "core.https_address").stdout.strip() == ""
    assert wait_port(port, is_open=False, timeout=3)
    lxc("config", "unset", "core.trust_password")
    lxc("config", "unset", "images.remote_cache_expiry")
    assert celld.get("/1.0").metadata["config"] == {}


def test_lxc_operations(celld, lxc):
    assert json.loads(lxc("operation", "list", "--format", "json").stdout) == []
    r = celld.request("POST", "/internal/testing/operations", {"duration_ms": 20000,
                                                              "cancellable": True})
    op_id = r.metadata["id"]
    listing = lxc("operation", "list").stdout
    assert op_id in listing and "RUNNING" in listing.upper(), listing
    ops = json.loads(lxc("operation", "list", "--format", "json").stdout)
    assert [o["id"] for o in ops] == [op_id]
    shown = yaml.safe_load(lxc("operation", "show", op_id).stdout)
    assert shown["id"] == op_id and shown["status"] == "Running" and shown["may_cancel"] is True
    lxc("operation", "delete", op_id)
    assert celld.wait_op(r.json["operation"])["status"] == "Cancelled"


def test_lxc_config_trust(celld, lxc, tmp_path):
    crt, _ = make_client_cert(str(tmp_path), "trusty")
    fp = cert_fingerprint(crt)
    lxc("config", "trust", "add", crt, "--name", "via-lxc")
    listed = json.loads(lxc("config", "trust", "list", "--format", "json").stdout)
    assert [(c["fingerprint"], c["name"]) for c in listed] == [(fp, "via-lxc")]
    shown = yaml.safe_load(lxc("config", "trust", "show", fp[:12]).stdout)
    assert shown["fingerprint"] == fp and shown["type"] == "client"
    p = lxc("config", "trust", "add", crt, check=False)
    assert p.returncode != 0, p
    lxc("config", "trust", "remove", fp)
    assert json.loads(lxc("config", "trust", "list", "--format", "json").stdout) == []


def test_lxc_monitor_sees_lifecycle_events(celld, lxc):
    env = dict(os.environ, HOME=os.path.dirname(lxc.conf), LXD_CONF=lxc.conf, LXD_DIR=celld.dir)
    p = subprocess.Popen(["lxc", "monitor", "--type=lifecycle", "--format", "json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in p.stdout], daemon=True).start()
    try:
        deadline = time.time() + 15
        while time.time() < deadline:
            assert celld.request("PATCH", "/1.0", {"config": {"user.mon": str(time.time())}}).status == 200
            try:
                ev = json.loads(lines.get(timeout=0.5))
            except queue.Empty:
                continue
            assert ev["type"] == "lifecycle", ev
            assert ev["metadata"]["action"] == "config-updated", ev
            break
        else:
            pytest.fail("lxc monitor saw no event: %s" % p.stderr.read() if p.poll() is not None
                        else "lxc monitor saw no event")
    finally:
        p.kill()
        p.wait()


# ---- lxc over HTTPS as a remote -----------------------------------------------------------------

def test_lxc_remote_add_and_use(celld, lxc):
    port = enable_https_tls(celld)
    pw = set_password(celld)
    url = "https://127.0.0.1:%d" % port
    p = lxc("remote", "add", "badpw", url, "--password", "wrong", "--accept-certificate",
            check=False)
    assert p.returncode != 0, p
    assert celld.get("/1.0/certificates").metadata == []

    lxc("remote", "add", "celld-it", url, "--password", pw, "--accept-certificate")
    client_fp = cert_fingerprint(os.path.join(lxc.conf, "client.crt"))
    # The same server under more names (already trusted: no password needed); each
    # add once had a good chance to crash celld (double close in srv_listener_accept).
    for i in range(4):
        lxc("remote", "add", "celld-it-%d" % i, url, "--accept-certificate")
        assert yaml.safe_load(lxc("info", "celld-it-%d:" % i).stdout)["auth"] == "trusted"
    assert celld.get("/1.0/certificates").metadata == ["/1.0/certificates/" + client_fp]
    remotes = json.loads(lxc("remote", "list", "--format", "json").stdout)
    assert remotes["celld-it"]["Addr"] == url

    info = yaml.safe_load(lxc("info", "celld-it:").stdout)
    assert info["auth"] == "trusted"
    assert info["environment"]["server"] == "celld"
    assert info["environment"]["addresses"] == ["127.0.0.1:%d" % port]
    assert json.loads(lxc("query", "celld-it:/1.0/certificates").stdout) == [
        "/1.0/certificates/" + client_fp]
    lxc("config", "set", "celld-it:", "user.from", "remote")
    assert celld.get("/1.0").metadata["config"]["user.from"] == "remote"
    assert json.loads(lxc("operation", "list", "celld-it:", "--format", "json").stdout) == []

    # Revoked: the remote is refused from then on.
    assert celld.request("DELETE", "/1.0/certificates/" + client_fp).status == 200
    p = lxc("query", "celld-it:/1.0/certificates", check=False)
    assert p.returncode != 0, p
    assert yaml.safe_load(lxc("info", "celld-it:").stdout)["auth"] == "untrusted"


# ---- pylxd ------------------------------------------------------------------------------------

pylxd = pytest.importorskip("pylxd")


def test_pylxd_unix_socket(celld, monkeypatch):
    # pylxd 2.2.10 only takes a bare socket path that os.path.isfile() accepts, which a
    # socket never is; it takes the http+unix:// URL, or LXD_DIR with no endpoint.
    client = pylxd.Client(endpoint="http+unix://" + quote(celld.sock, safe=""))
    assert client.trusted
    assert client.host_info["environment"]["server"] == "celld"
    assert client.host_info["environment"]["server_pid"] == celld.proc.pid
    assert client.has_api_extension("etag")
    assert client.api.get().json()["metadata"]["auth"] == "trusted"
    assert client.certificates.all() == []
    assert client.api.operations.get().status_code == 200

    monkeypatch.setenv("LXD_DIR", celld.dir)
    client2 = pylxd.Client()
    assert client2.host_info["environment"]["certificate_fingerprint"] == \
        client.host_info["environment"]["certificate_fingerprint"]
    r = client2.api.patch(json={"config": {"user.pylxd": "yes"}})
    assert r.status_code == 200, r.text
    assert celld.get("/1.0").metadata["config"] == {"user.pylxd": "yes"}


def test_pylxd_https_authenticate(celld, tmp_path, monkeypatch):
    from pylxd import exceptions
    # requests lets these override a session's verify=False.
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    port = enable_https_tls(celld)
    pw = set_password(celld)
    crt, key = make_client_cert(str(tmp_path), "pylxd")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client = pylxd.Client(endpoint="https://127.0.0.1:%d" % port, cert=(crt, key), verify=False)
        assert client.trusted is False
        assert client.host_info["auth"] == "untrusted"
        with pytest.raises(exceptions.LXDAPIException) as e:
            client.api.certificates.get()
        assert e.value.response.status_code == 403
        with pytest.raises(exceptions.LXDAPIException):
            client.authenticate("not-the-password")
        assert client.trusted is False
        assert celld.get("/1.0/certificates").metadata == []

        client.authenticate(pw)
        assert client.trusted is True
        fps = [c.fingerprint for c in client.certificates.all()]
        assert fps == [cert_fingerprint(crt)]
        cert = client.certificates.get(cert_fingerprint(crt))
        assert cert.name == "pylxd" and cert.type == "client"
        assert client.api.get().json()["metadata"]["environment"]["server"] == "celld"
        assert client.api.operations.get().status_code == 200
