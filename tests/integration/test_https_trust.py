"""HTTPS and the trust store: untrusted clients, the trust password, adding,
renaming and revoking certificates, TLS versions, live address changes."""
import hashlib
import json
import socket
import ssl
import threading
import time
import warnings

import pytest
import websocket

from cellenv import (Celld, cert_b64_der, cert_fingerprint, curl, curl_https, do_request,
                     enable_https_tls, free_port, make_client_cert, port_open,
                     stop_checked, wait_https, wait_port)
from wsutil import ws_https

PASSWORD = "trust-me-%s" % time.time()


@pytest.fixture
def celld(tmp_path_factory):
    d = Celld().start()
    try:
        yield d
        stop_checked(d)
    finally:
        d.cleanup()


@pytest.fixture
def https(celld):
    enable_https_tls(celld)
    return celld


@pytest.fixture
def client_cert(tmp_path):
    return make_client_cert(str(tmp_path), "itest-client")


def set_password(celld, pw=PASSWORD):
    r = celld.request("PATCH", "/1.0", {"config": {"core.trust_password": pw}})
    assert r.status == 200, r


def trusted_fps(celld):
    r = celld.get("/1.0/certificates?recursion=1")
    assert r.status == 200, r
    return sorted(c["fingerprint"] for c in r.metadata)


def assert_error(r, status):
    assert r.status == status, r
    assert r.json and r.json["type"] == "error" and r.json["error_code"] == status, r


def add_by_password(celld, cert, key, pw=PASSWORD):
    return curl_https(celld.https_port, "POST", "/1.0/certificates", cert, key,
                      body={"type": "client", "password": pw})


# ---- untrusted ------------------------------------------------------------------

@pytest.mark.parametrize("with_cert", [True, False], ids=["client-cert", "no-cert"])
def test_untrusted_client(https, client_cert, with_cert):
    crt, key = client_cert if with_cert else (None, None)
    port = https.https_port
    set_password(https)
    r = curl_https(port, "GET", "/1.0", crt, key)
    assert r.status == 200, r
    md = r.metadata
    assert md["auth"] == "untrusted"
    assert md["api_version"] == "1.0" and isinstance(md["api_extensions"], list)
    assert "config" not in md and "environment" not in md
    assert PASSWORD.encode() not in r.body
    assert curl_https(port, "GET", "/", crt, key).metadata == ["/1.0"]

    for method, path, body in (
            ("GET", "/1.0/operations", None),
            ("GET", "/1.0/certificates", None),
            ("GET", "/1.0/certificates?recursion=1", None),
            ("PUT", "/1.0", {"config": {}}),
            ("PATCH", "/1.0", {"config": {"user.x": "1"}}),
            ("GET", "/1.0/certificates/" + "a" * 64, None),
            ("DELETE", "/1.0/certificates/" + "a" * 64, None),
            ("POST", "/internal/testing/operations", {"duration_ms": 1})):
        assert_error(curl_https(port, method, path, crt, key, body=body), 403)
    # Nothing changed behind the refusals.
    assert https.get("/1.0").metadata["config"] == {
        "core.https_address": "127.0.0.1:%d" % port, "core.trust_password": True}
    assert https.get("/1.0/operations").metadata.get("running", []) == []
    # The events websocket is refused too.
    with pytest.raises(websocket.WebSocketException):
        ws_https(port, "/1.0/events", crt, key)


def test_untrusted_operation_access_refused(https, client_cert):
    r = https.request("POST", "/internal/testing/operations", {"duration_ms": 3000,
                                                              "cancellable": True})
    url = r.json["operation"]
    crt, key = client_cert
    for method, path in (("GET", url), ("GET", url + "/wait?timeout=1"), ("DELETE", url)):
        assert_error(curl_https(https.https_port, method, path, crt, key), 403)
    assert https.get(url).metadata["status"] == "Running"
    assert https.request("DELETE", url).status == 200


# ---- the trust password -----------------------------------------------------------

def test_wrong_password_refused(https, client_cert):
    crt, key = client_cert
    set_password(https)
    for pw in ("wrong", "", PASSWORD + "x", PASSWORD[:-1]):
        assert_error(add_by_password(https, crt, key, pw), 403)
    r = curl_https(https.https_port, "POST", "/1.0/certificates", crt, key, body={"type": "client"})
    assert_error(r, 403)
    assert trusted_fps(https) == []
    assert curl_https(https.https_port, "GET", "/1.0", crt, key).metadata["auth"] == "untrusted"


def test_no_password_set_refuses_everyone(https, client_cert):
    crt, key = client_cert
    for pw in ("", "anything"):
        assert_error(add_by_password(https, crt, key, pw), 403)
    assert trusted_fps(https) == []


def test_right_password_trusts(https, client_cert):
    crt, key = client_cert
    fp = cert_fingerprint(crt)
    set_password(https)
    r = add_by_password(https, crt, key)
    assert r.status == 201, r
    assert r.headers.get("location") == "/1.0/certificates/" + fp
    assert trusted_fps(https) == [fp]
    c = https.get("/1.0/certificates/" + fp).metadata
    assert c["name"] == "itest-client" and c["type"] == "client"

    port = https.https_port
    r = curl_https(port, "GET", "/1.0", crt, key)
    assert r.metadata["auth"] == "trusted"
    assert r.metadata["config"]["core.trust_password"] is True
    assert r.metadata["environment"]["server"] == "celld"
    assert curl_https(port, "GET", "/1.0/certificates", crt, key).metadata == [
        "/1.0/certificates/" + fp]
    assert curl_https(port, "GET", "/1.0/operations", crt, key).status == 200
    r = curl_https(port, "PATCH", "/1.0", crt, key, body={"config": {"user.via": "https"}})
    assert r.status == 200, r
    assert https.get("/1.0").metadata["config"]["user.via"] == "https"

    # The same certificate again: by the (now trusted) client itself and over the socket.
    r = curl_https(port, "POST", "/1.0/certificates", crt, key,
                   body={"type": "client", "certificate": cert_b64_der(crt)})
    assert_error(r, 409)
    r = https.request("POST", "/1.0/certificates", {"type": "client", "certificate": cert_b64_der(crt)})
    assert_error(r, 409)
    assert trusted_fps(https) == [fp]


def test_password_attempts_in_parallel(https, tmp_path):
    """A crowd guessing passwords gets refusals (or 503 throttling), never trust."""
    set_password(https)
    crt, key = make_client_cert(str(tmp_path), "guesser")
    results = []

    def guess(i):
        results.append(add_by_password(https, crt, key, "guess-%d" % i).status)
    threads = [threading.Thread(target=guess, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 12 and set(results) <= {403, 503}, results
    assert 403 in results
    assert trusted_fps(https) == []
    # The right password still works afterwards.
    assert add_by_password(https, crt, key).status == 201


# ---- certificates by a trusted client ------------------------------------------------

def test_trusted_client_manages_certificates(https, tmp_path):
    crt, key = make_client_cert(str(tmp_path), "admin")
    other_crt, _ = make_client_cert(str(tmp_path), "other")
    fp, other_fp = cert_fingerprint(crt), cert_fingerprint(other_crt)
    set_password(https)
    assert add_by_password(https, crt, key).status == 201
    port = https.https_port

    # A trusted client adds another certificate without any password.
    r = curl_https(port, "POST", "/1.0/certificates", crt, key,
                   body={"type": "client", "certificate": cert_b64_der(other_crt), "name": "given"})
    assert r.status == 201, r
    listed = curl_https(port, "GET", "/1.0/certificates", crt, key).metadata
    assert sorted(listed) == sorted(["/1.0/certificates/" + fp, "/1.0/certificates/" + other_fp])
    objs = curl_https(port, "GET", "/1.0/certificates?recursion=1", crt, key).metadata
    assert {o["fingerprint"]: o["name"] for o in objs} == {fp: "admin", other_fp: "given"}

    r = curl_https(port, "GET", "/1.0/certificates/" + other_fp, crt, key)
    assert r.status == 200 and r.metadata["fingerprint"] == other_fp, r
    etag = r.headers["etag"]
    r = curl_https(port, "PATCH", "/1.0/certificates/" + other_fp, crt, key,
                   body={"name": "renamed"}, headers={"If-Match": etag})
    assert r.status == 200, r
    assert https.get("/1.0/certificates/" + other_fp).metadata["name"] == "renamed"
    r = curl_https(port, "PUT", "/1.0/certificates/" + other_fp, crt, key,
                   body={"name": "stale", "type": "client"}, headers={"If-Match": etag})
    assert_error(r, 412)
    r = curl_https(port, "PUT", "/1.0/certificates/" + other_fp[:10], crt, key,
                   body={"name": "put-name", "type": "client"})
    assert r.status == 200, r
    assert https.get("/1.0/certificates/" + other_fp).metadata["name"] == "put-name"
    r = curl_https(port, "PATCH", "/1.0/certificates/" + other_fp, crt, key, body={"type": "server"})
    assert_error(r, 400)
    assert https.get("/1.0/certificates/" + other_fp).metadata["type"] == "client"

    assert curl_https(port, "DELETE", "/1.0/certificates/" + other_fp, crt, key).status == 200
    assert trusted_fps(https) == [fp]


def test_certificate_added_over_unix_is_trusted_over_https(https, client_cert):
    crt, key = client_cert
    fp = cert_fingerprint(crt)
    assert curl_https(https.https_port, "GET", "/1.0", crt, key).metadata["auth"] == "untrusted"
    # No password configured at all: the unix socket is trusted by itself.
    r = https.request("POST", "/1.0/certificates", {"type": "client", "certificate": cert_b64_der(crt)})
    assert r.status == 201, r
    r = curl_https(https.https_port, "GET", "/1.0/certificates", crt, key)
    assert r.status == 200 and r.metadata == ["/1.0/certificates/" + fp], r


# ---- revocation -----------------------------------------------------------------------

def keepalive(celld, crt, key):
    conn = celld.https(crt, key)
    r = do_request(conn, "GET", "/1.0/certificates")
    return conn, r


def test_revoke_applies_to_open_and_new_connections(https, client_cert):
    crt, key = client_cert
    fp = cert_fingerprint(crt)
    set_password(https)
    assert add_by_password(https, crt, key).status == 201
    conn, r = keepalive(https, crt, key)
    assert r.status == 200, r
    sock = conn.sock

    assert https.request("DELETE", "/1.0/certificates/" + fp).status == 200
    r = do_request(conn, "GET", "/1.0/certificates")
    assert conn.sock is sock, "the connection was not kept alive: the test proves nothing"
    assert_error(r, 403)
    r = do_request(conn, "GET", "/1.0")
    assert r.status == 200 and r.metadata["auth"] == "untrusted"
    conn.close()
    assert_error(curl_https(https.https_port, "GET", "/1.0/certificates", crt, key), 403)
    assert curl_https(https.https_port, "GET", "/1.0", crt, key).metadata["auth"] == "untrusted"


def test_client_revokes_itself(https, client_cert):
    crt, key = client_cert
    fp = cert_fingerprint(crt)
    set_password(https)
    assert add_by_password(https, crt, key).status == 201
    conn, r = keepalive(https, crt, key)
    assert r.status == 200
    sock = conn.sock
    r = do_request(conn, "DELETE", "/1.0/certificates/" + fp)
    assert r.status == 200, r
    r = do_request(conn, "GET", "/1.0/operations")
    assert conn.sock is sock
    assert_error(r, 403)
    conn.close()
    assert trusted_fps(https) == []
    # And it can come back with the password.
    assert add_by_password(https, crt, key).status == 201
    assert curl_https(https.https_port, "GET", "/1.0/operations", crt, key).status == 200


def test_events_websocket_over_https(https, client_cert):
    crt, key = client_cert
    https.request("POST", "/1.0/certificates", {"type": "client", "certificate": cert_b64_der(crt)})
    ws = ws_https(https.https_port, "/1.0/events?type=lifecycle", crt, key)
    assert https.request("PATCH", "/1.0", {"config": {"user.ev": "x"}}).status == 200
    ev = json.loads(ws.recv())
    assert ev["type"] == "lifecycle" and ev["metadata"]["action"] == "config-updated", ev
    # Revoking closes nothing already upgraded, but a new subscription is refused.
    assert https.request("DELETE", "/1.0/certificates/" + cert_fingerprint(crt)).status == 200
    ws.close()
    with pytest.raises(websocket.WebSocketException):
        ws_https(https.https_port, "/1.0/events", crt, key)


# ---- TLS ------------------------------------------------------------------------------

def tls_handshake(port, version):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    # Let the client offer old protocols; only the server may say no.
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = version
        ctx.maximum_version = version
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10))
    try:
        return s.version(), s.getpeercert(binary_form=True)
    finally:
        s.close()


def test_tls_versions(https):
    port = https.https_port
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1]
    for v in old:
        with pytest.raises(ssl.SSLError) as e:
            tls_handshake(port, v)
        # The server's alert, not a client that could not offer the version.
        assert "PROTOCOL_VERSION" in str(e.value).upper() or "protocol version" in str(e.value), e.value
    assert tls_handshake(port, ssl.TLSVersion.TLSv1_2)[0] == "TLSv1.2"
    assert tls_handshake(port, ssl.TLSVersion.TLSv1_3)[0] == "TLSv1.3"
    for flags in (["--tlsv1.2", "--tls-max", "1.2"], ["--tlsv1.3"]):
        r = curl_https(port, "GET", "/1.0", extra=flags)
        assert r.status == 200, (flags, r, r.curl_err)
    r = curl_https(port, "GET", "/1.0", extra=["--tlsv1.1", "--tls-max", "1.1",
                                                "--ciphers", "DEFAULT@SECLEVEL=0"])
    assert r.status == 0 and r.curl_rc != 0, r
    assert https.get("/1.0").status == 200


def test_presented_certificate_matches_fingerprint(https):
    fp = https.get("/1.0").metadata["environment"]["certificate_fingerprint"]
    _, der = tls_handshake(https.https_port, ssl.TLSVersion.TLSv1_3)
    assert hashlib.sha256(der).hexdigest() == fp
    _, der = tls_handshake(https.https_port, ssl.TLSVersion.TLSv1_2)
    assert hashlib.sha256(der).hexdigest() == fp


# ---- core.https_address applied live ------------------------------------------------

def test_https_address_changes_live(celld):
    pid = celld.proc.pid
    a, b = free_port(), free_port()
    while b == a:
        b = free_port()
    assert not port_open(a) and not port_open(b)
    assert celld.request("PATCH", "/1.0", {"config": {"core.https_address": "127.0.0.1:%d" % a}}).status == 200
    assert wait_https(a)
    assert curl_https(a, "GET", "/1.0").metadata["auth"] == "untrusted"

    assert celld.request("PATCH", "/1.0", {"config": {"core.https_address": "127.0.0.1:%d" % b}}).status == 200
    assert wait_port(a, is_open=False, timeout=3), "old port still open"
    assert wait_https(b)
    assert curl_https(b, "GET", "/1.0").status == 200
    assert curl_https(a, "GET", "/1.0").status == 0
    assert celld.get("/1.0").metadata["environment"]["addresses"] == ["127.0.0.1:%d" % b]

    # Back to the first port (it must be bindable again at once).
    assert celld.request("PUT", "/1.0", {"config": {"core.https_address": "127.0.0.1:%d" % a}}).status == 200
    assert wait_https(a) and wait_port(b, is_open=False, timeout=3)

    assert celld.request("PATCH", "/1.0", {"config": {"core.https_address": ""}}).status == 200
    assert wait_port(a, is_open=False, timeout=3), "unset did not close the listener"
    assert celld.get("/1.0").metadata["environment"]["addresses"] == []
    assert celld.proc.pid == pid and celld.proc.poll() is None


def test_https_address_ipv6_loopback(celld):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
    except OSError:
        pytest.skip("no ::1")
    port = free_port()
    r = celld.request("PATCH", "/1.0", {"config": {"core.https_address": "[::1]:%d" % port}})
    assert r.status == 200, r
    assert wait_https(port, host="::1")
    assert celld.get("/1.0").metadata["environment"]["addresses"] == ["[::1]:%d" % port]
    r = curl(["-k", "https://[::1]:%d/1.0" % port])
    assert r.status == 200 and r.metadata["auth"] == "untrusted", r


def test_https_address_busy_port_is_an_error(celld):
    port = enable_https_tls(celld)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        bport = busy.getsockname()[1]
        r = celld.request("PATCH", "/1.0", {"config": {"core.https_address": "127.0.0.1:%d" % bport}})
        md = celld.get("/1.0").metadata
        # Either refused with nothing changed, or (if accepted) really served.
        assert r.status >= 400, r
        assert md["config"]["core.https_address"] == "127.0.0.1:%d" % port
        assert md["environment"]["addresses"] == ["127.0.0.1:%d" % port]
        assert port_open(port)
    finally:
        busy.close()


def test_no_leak_per_https_request(tmp_path):
    d = Celld().start()
    try:
        enable_https_tls(d)
        crt, key = make_client_cert(str(tmp_path), "leak")
        conn = d.https(crt, key)
        for _ in range(3):
            assert do_request(conn, "GET", "/1.0").status == 200
        conn.close()
        assert curl_https(d.https_port, "GET", "/1.0", crt, key).status == 200
        stop_checked(d)
    finally:
        d.cleanup()
