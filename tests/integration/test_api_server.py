"""GET / and /1.0, server config (PUT/PATCH/ETag), certificates and operations
over the unix socket, driven with curl --unix-socket as LXD scripts do."""
import os
import platform
import re
import subprocess
import time

import pytest

from cellenv import (CELLD, cert_b64_der, cert_fingerprint, curl_unix, free_port,
                     make_client_cert, wait_https)


def api(celld, method, path, body=None, headers=None):
    return curl_unix(celld.sock, method, path, body=body, headers=headers)


def get_ok(celld, path):
    r = api(celld, "GET", path)
    assert r.status == 200, r
    assert r.json["type"] == "sync" and r.json["status_code"] == 200, r
    return r


def config_of(celld):
    return get_ok(celld, "/1.0").metadata["config"]


def assert_error(r, status):
    assert r.status == status, r
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    assert r.json["type"] == "error", r
    assert r.json["error_code"] == status, r
    assert isinstance(r.json["error"], str) and r.json["error"], r
    return r.json["error"]


# ---- GET / and GET /1.0 ---------------------------------------------------------

def test_root_lists_api_versions(celld):
    r = get_ok(celld, "/")
    assert r.metadata == ["/1.0"]
    for key, want in (("status", "Success"), ("operation", ""), ("error_code", 0), ("error", "")):
        assert r.json[key] == want, (key, r.json)


def test_head_1_0(celld):
    r = api(celld, "HEAD", "/1.0")
    assert r.status == 200, r
    assert r.headers.get("etag")
    assert b"{" not in r.body          # headers only (curl -I prints them as the body)


def test_server_description(celld):
    r = get_ok(celld, "/1.0")
    md = r.metadata
    assert md["api_version"] == "1.0"
    assert md["api_status"] == "stable"
    assert md["auth"] == "trusted"
    assert md["public"] is False
    assert isinstance(md["api_extensions"], list) and md["api_extensions"]
    assert all(isinstance(e, str) and e for e in md["api_extensions"])
    assert len(set(md["api_extensions"])) == len(md["api_extensions"])
    assert md["config"] == {}

    env = md["environment"]
    uname = os.uname()
    assert env["server"] == "celld"
    version = subprocess.run([CELLD, "--version"], capture_output=True, text=True,
                             check=True).stdout.strip()
    assert env["server_version"] == version and version
    assert env["kernel"] == uname.sysname
    assert env["kernel_version"] == uname.release
    assert env["kernel_architecture"] == uname.machine == platform.machine()
    assert env["architectures"][0] == uname.machine
    assert isinstance(env["kernel_features"], dict)
    assert env["driver"] == "lxc"
    assert re.match(r"^\d+\.\d+", env["driver_version"]), env["driver_version"]
    assert env["storage"] and isinstance(env["storage"], str)
    assert env["server_pid"] == celld.proc.pid
    assert env["addresses"] == []
    assert env["server_clustered"] is False
    assert env["project"] == "default"


def test_server_certificate(celld):
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    env = get_ok(celld, "/1.0").metadata["environment"]
    crt = os.path.join(celld.dir, "server.crt")
    key = os.path.join(celld.dir, "server.key")
    with open(crt) as f:
        pem = f.read()
    assert env["certificate"].strip() == pem.strip()
    assert env["certificate_fingerprint"] == cert_fingerprint(pem)
    assert re.fullmatch(r"[0-9a-f]{64}", env["certificate_fingerprint"])

    cert = x509.load_pem_x509_certificate(pem.encode())
    pub = cert.public_key()
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    assert pub.curve.name == "secp384r1"
    assert cert.issuer == cert.subject                      # self-signed ...
    pub.verify(cert.signature, cert.tbs_certificate_bytes,  # ... by its own key
               ec.ECDSA(cert.signature_hash_algorithm))
    assert os.stat(key).st_mode & 0o077 == 0, oct(os.stat(key).st_mode)


def test_addresses_follow_https_address(celld):
    port = free_port()
    r = api(celld, "PATCH", "/1.0", {"config": {"core.https_address": "127.0.0.1:%d" % port}})
    assert r.status == 200, r
    env = get_ok(celld, "/1.0").metadata["environment"]
    assert env["addresses"] == ["127.0.0.1:%d" % port]
    assert wait_https(port)

    # Wildcard: every listed address carries the port (the list comes from the interfaces).
    port2 = free_port()
    r = api(celld, "PATCH", "/1.0", {"config": {"core.https_address": ":%d" % port2}})
    assert r.status == 200, r
    addrs = get_ok(celld, "/1.0").metadata["environment"]["addresses"]
    assert all(a.endswith(":%d" % port2) for a in addrs), addrs
    assert not any(a.startswith("127.") or a.startswith("[::1]") for a in addrs), addrs

    r = api(celld, "PATCH", "/1.0", {"config": {"core.https_address": ""}})
    assert r.status == 200, r
    assert get_ok(celld, "/1.0").metadata["environment"]["addresses"] == []
    assert "core.https_address" not in config_of(celld)


# ---- PUT / PATCH semantics ----------------------------------------------------

def test_patch_merges(celld):
    assert api(celld, "PATCH", "/1.0", {"config": {"user.a": "1"}}).status == 200
    assert api(celld, "PATCH", "/1.0", {"config": {"images.remote_cache_expiry": "5"}}).status == 200
    assert config_of(celld) == {"user.a": "1", "images.remote_cache_expiry": "5"}
    # PATCH without config changes nothing.
    assert api(celld, "PATCH", "/1.0", {}).status == 200
    assert config_of(celld) == {"user.a": "1", "images.remote_cache_expiry": "5"}
    # "" removes one key, the others stay.
    assert api(celld, "PATCH", "/1.0", {"config": {"user.a": ""}}).status == 200
    assert config_of(celld) == {"images.remote_cache_expiry": "5"}


def test_put_replaces(celld):
    assert api(celld, "PATCH", "/1.0", {"config": {"user.a": "1", "user.b": "2",
                                                   "images.auto_update_interval": "3"}}).status == 200
    assert api(celld, "PUT", "/1.0", {"config": {"user.c": "3"}}).status == 200
    assert config_of(celld) == {"user.c": "3"}
    assert api(celld, "PUT", "/1.0", {"config": {}}).status == 200
    assert config_of(celld) == {}


def test_put_keeps_secret_sent_back_as_true(celld):
    """`lxc config edit` sends back what GET showed: core.trust_password: true."""
    assert api(celld, "PATCH", "/1.0", {"config": {"core.trust_password": "pw-keep",
                                                   "user.x": "1"}}).status == 200
    cfg = config_of(celld)
    assert cfg == {"core.trust_password": True, "user.x": "1"}
    cfg["user.y"] = "2"
    assert api(celld, "PUT", "/1.0", {"config": cfg}).status == 200
    assert config_of(celld) == {"core.trust_password": True, "user.x": "1", "user.y": "2"}
    # A PUT leaving it out removes it.
    assert api(celld, "PUT", "/1.0", {"config": {"user.x": "1"}}).status == 200
    assert config_of(celld) == {"user.x": "1"}


def test_etag_and_if_match(celld):
    r = get_ok(celld, "/1.0")
    etag = r.headers.get("etag")
    assert etag and re.fullmatch(r'"?[0-9a-f]{16,}"?', etag), r.headers
    # Stable while nothing changes.
    assert get_ok(celld, "/1.0").headers["etag"] == etag

    for method in ("PUT", "PATCH"):
        r = api(celld, method, "/1.0", {"config": {"user.no": "1"}},
                headers={"If-Match": '"' + "0" * 64 + '"'})
        assert_error(r, 412)
    assert config_of(celld) == {}

    r = api(celld, "PATCH", "/1.0", {"config": {"user.yes": "1"}}, headers={"If-Match": etag})
    assert r.status == 200, r
    assert config_of(celld) == {"user.yes": "1"}
    new = get_ok(celld, "/1.0").headers["etag"]
    assert new != etag

    # The old ETag is stale now.
    assert_error(api(celld, "PUT", "/1.0", {"config": {}}, headers={"If-Match": etag}), 412)
    assert config_of(celld) == {"user.yes": "1"}
    r = api(celld, "PUT", "/1.0", {"config": {"user.put": "2"}}, headers={"If-Match": new})
    assert r.status == 200, r
    assert config_of(celld) == {"user.put": "2"}


def test_unknown_key_refused_and_nothing_changed(celld):
    assert api(celld, "PATCH", "/1.0", {"config": {"user.keep": "1"}}).status == 200
    for method in ("PUT", "PATCH"):
        msg = assert_error(api(celld, method, "/1.0", {"config": {"no.such.key": "1"}}), 400)
        assert "no.such.key" in msg
        # One bad key spoils the whole request: the good one is not applied either.
        assert_error(api(celld, method, "/1.0",
                         {"config": {"user.new": "1", "core.bogus": "x"}}), 400)
        assert config_of(celld) == {"user.keep": "1"}


@pytest.mark.parametrize("key,value", [
    ("images.remote_cache_expiry", "abc"),
    ("images.remote_cache_expiry", "-1"),
    ("images.remote_cache_expiry", "1.5"),
    ("images.auto_update_interval", "6 hours"),
    ("core.https_address", "nonsense:99999"),
    ("core.https_address", "127.0.0.1:0"),
    ("core.https_address", "1.2.3:8443"),
    ("core.https_address", "[::1:8443"),
    ("core.https_address", "bad host name:8443"),
])
def test_bad_values_refused(celld, key, value):
    before = get_ok(celld, "/1.0")
    for method in ("PATCH", "PUT"):
        msg = assert_error(api(celld, method, "/1.0", {"config": {key: value}}), 400)
        assert key in msg, msg
    after = get_ok(celld, "/1.0")
    assert after.metadata["config"] == {}
    assert after.headers["etag"] == before.headers["etag"]
    assert after.metadata["environment"]["addresses"] == []


def test_trust_password_never_in_clear(celld):
    secret = "Clear-Pw-%d-%s" % (os.getpid(), os.urandom(6).hex())
    r = api(celld, "PATCH", "/1.0", {"config": {"core.trust_password": secret}})
    assert r.status == 200, r
    r = get_ok(celld, "/1.0")
    assert r.metadata["config"]["core.trust_password"] is True
    assert secret.encode() not in r.body
    # Changing it again works the same way.
    secret2 = secret + "-2"
    assert api(celld, "PUT", "/1.0", {"config": {"core.trust_password": secret2}}).status == 200
    assert get_ok(celld, "/1.0").metadata["config"] == {"core.trust_password": True}
    # Nowhere in the state dir (database, WAL, logs) in clear.
    time.sleep(0.1)
    for root, _, files in os.walk(celld.dir):
        for name in files:
            path = os.path.join(root, name)
            if not os.path.isfile(path):
                continue
            with open(path, "rb") as f:
                data = f.read()
            assert secret.encode() not in data, path
            assert secret2.encode() not in data, path
    assert os.listdir(os.path.join(celld.dir, "database"))
    # Unset removes it.
    assert api(celld, "PATCH", "/1.0", {"config": {"core.trust_password": ""}}).status == 200
    assert config_of(celld) == {}


def test_config_change_emits_lifecycle_event(celld):
    import json
    from wsutil import ws_unix
    ws = ws_unix(celld, "/1.0/events?type=lifecycle")
    assert api(celld, "PATCH", "/1.0", {"config": {"user.ev": "1"}}).status == 200
    ev = json.loads(ws.recv())
    ws.close()
    assert ev["type"] == "lifecycle"
    assert ev["metadata"]["action"] == "config-updated"
    assert ev["metadata"]["source"] == "/1.0"


# ---- certificates over the unix socket ----------------------------------------

def test_certificates_over_unix(celld, tmp_path):
    crt, _ = make_client_cert(str(tmp_path), "unixadd")
    fp = cert_fingerprint(crt)
    r = get_ok(celld, "/1.0/certificates")
    assert r.metadata == []

    r = api(celld, "POST", "/1.0/certificates", {"type": "client", "certificate": cert_b64_der(crt)})
    assert r.status == 201, r
    assert r.headers.get("location") == "/1.0/certificates/" + fp, r.headers

    assert get_ok(celld, "/1.0/certificates").metadata == ["/1.0/certificates/" + fp]
    objs = get_ok(celld, "/1.0/certificates?recursion=1").metadata
    assert len(objs) == 1 and objs[0]["fingerprint"] == fp

    r = get_ok(celld, "/1.0/certificates/" + fp)
    c = r.metadata
    assert c["fingerprint"] == fp
    assert c["type"] == "client"
    assert c["name"] == "unixadd"          # the subject CN when no name is given
    assert c["restricted"] is False
    assert "BEGIN CERTIFICATE" in c["certificate"]
    assert cert_fingerprint(c["certificate"]) == fp
    assert r.headers.get("etag")
    # A unique prefix names it too.
    assert get_ok(celld, "/1.0/certificates/" + fp[:12]).metadata["fingerprint"] == fp

    # PATCH renames, PUT with a stale ETag is refused.
    etag = r.headers["etag"]
    assert api(celld, "PATCH", "/1.0/certificates/" + fp, {"name": "renamed"}).status == 200
    assert get_ok(celld, "/1.0/certificates/" + fp).metadata["name"] == "renamed"
    assert_error(api(celld, "PUT", "/1.0/certificates/" + fp, {"name": "x", "type": "client"},
                     headers={"If-Match": etag}), 412)
    assert get_ok(celld, "/1.0/certificates/" + fp).metadata["name"] == "renamed"

    # The same certificate again: conflict, still one.
    r = api(celld, "POST", "/1.0/certificates", {"type": "client", "certificate": cert_b64_der(crt)})
    assert_error(r, 409)
    assert len(get_ok(celld, "/1.0/certificates").metadata) == 1

    assert api(celld, "DELETE", "/1.0/certificates/" + fp).status == 200
    assert_error(api(celld, "GET", "/1.0/certificates/" + fp), 404)
    assert_error(api(celld, "DELETE", "/1.0/certificates/" + fp), 404)
    assert get_ok(celld, "/1.0/certificates").metadata == []


def test_certificate_post_over_unix_needs_material(celld):
    # No TLS peer on the unix socket, so the certificate must be in the body.
    r = api(celld, "POST", "/1.0/certificates", {"type": "client"})
    assert_error(r, 400)
    assert get_ok(celld, "/1.0/certificates").metadata == []


# ---- operations endpoints through curl ------------------------------------------

def test_operations_endpoints_with_curl(celld):
    r = api(celld, "GET", "/1.0/operations")
    assert r.status == 200 and isinstance(r.metadata, dict), r
    r = api(celld, "POST", "/internal/testing/operations", {"duration_ms": 10000, "cancellable": True})
    assert r.status == 202, r
    url = r.json["operation"]
    assert url in api(celld, "GET", "/1.0/operations").metadata["running"]
    r = api(celld, "GET", url + "/wait?timeout=0.2")
    assert r.status == 200 and r.metadata["status"] == "Running", r
    assert api(celld, "DELETE", url).status == 200
    r = api(celld, "GET", url + "/wait?timeout=10")
    assert r.status == 200 and r.metadata["status"] == "Cancelled", r
    assert api(celld, "GET", url).metadata["status_code"] == 401
