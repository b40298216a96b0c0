"""A real celld in a fresh temporary CELL_DIR, and ways to talk to it.

Every test gets its own daemon (unique dir, socket and names), started from
the build under test and stopped by its pid; stderr is kept so sanitizer
reports fail the test that triggered them.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

BUILD = os.environ.get("CELL_BUILD_DIR") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build")
CELLD = os.path.join(BUILD, "celld")
CELL = os.path.join(BUILD, "cell")


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    @property
    def metadata(self):
        return self.json.get("metadata") if isinstance(self.json, dict) else None

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:300])


def do_request(conn, method, path, body=None, headers=None):
    hdrs = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
        hdrs.setdefault("Content-Type", "application/json")
    conn.request(method, path, body=body, headers=hdrs)
    r = conn.getresponse()
    data = r.read()
    return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Celld:
    def __init__(self, cell_dir=None, extra_env=None, args=()):
        self.dir = cell_dir or tempfile.mkdtemp(prefix="cell-test-")
        self.sock = os.path.join(self.dir, "unix.socket")
        self.stderr_path = os.path.join(self.dir, "celld.stderr")
        self.env = dict(os.environ, CELL_DIR=self.dir, CELL_TEST_HOOKS="1")
        self.env.update(extra_env or {})
        self.args = list(args)
        self.proc = None

    def start(self, wait=True):
        self._stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen([CELLD, "--debug"] + self.args, env=self.env,
                                     stdout=self._stderr, stderr=self._stderr)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("celld exited with %d:\n%s" % (self.proc.returncode,
                                                                  self.stderr()))
            try:
                if self.get("/1.0").status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.01)
        raise RuntimeError("celld did not become ready:\n" + self.stderr())

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Stop by pid; returns the exit code. Sanitizer reports raise."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            raise AssertionError("celld did not stop within %ds:\n%s" % (timeout, self.stderr()))
        self._stderr.close()
        err = self.stderr()
        if "Sanitizer" in err or "runtime error:" in err:
            raise AssertionError("sanitizer report from celld:\n" + err[-6000:])
        return rc

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    # HTTP over the unix socket
    def conn(self, timeout=30):
        return UnixHTTPConnection(self.sock, timeout)

    def request(self, method, path, body=None, headers=None):
        c = self.conn()
        try:
            return do_request(c, method, path, body, headers)
        finally:
            c.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def wait_op(self, op_url, timeout=30):
        r = self.get(op_url + "/wait?timeout=%d" % timeout)
        assert r.status == 200, r
        return r.metadata

    # The cell client against this daemon
    def cell(self, *args, input=None, check=True, env=None, timeout=120):
        e = dict(os.environ, CELL_DIR=self.dir, CELL_CONF=os.path.join(self.dir, "client"))
        e.update(env or {})
        p = subprocess.run([CELL] + list(args), input=input, capture_output=True, env=e,
                           timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError("cell %s failed (%d):\nstdout: %s\nstderr: %s" % (
                " ".join(args), p.returncode, p.stdout.decode(errors="replace"),
                p.stderr.decode(errors="replace")))
        return p

    # HTTPS
    def enable_https(self, port=None):
        port = port or free_port()
        r = self.request("PATCH", "/1.0", {"config": {"core.https_address": "127.0.0.1:%d" % port}})
        assert r.status == 200, r
        self.https_port = port
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return port
            except OSError:
                time.sleep(0.02)
        raise AssertionError("HTTPS did not come up on %d" % port)

    def https(self, cert=None, key=None, port=None, min_version=None, max_version=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        if min_version:
            ctx.minimum_version = min_version
        if max_version:
            ctx.maximum_version = max_version
        if cert:
            ctx.load_cert_chain(cert, key)
        return http.client.HTTPSConnection("127.0.0.1", port or self.https_port, context=ctx,
                                           timeout=30)


def make_client_cert(directory, name="client"):
    crt = os.path.join(directory, name + ".crt")
    key = os.path.join(directory, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:secp384r1", "-nodes", "-days", "30", "-subj",
                    "/CN=" + name, "-keyout", key, "-out", crt], check=True,
                   capture_output=True)
    return crt, key


# ---- helpers shared by the foundation tests (server, trust, bad input,
# lifecycle, LXD clients) ------------------------------------------------------

def _parse_curl_headers(raw):
    """Headers of the last response in a curl -D dump (skips 100 Continue)."""
    blocks = [b for b in raw.replace("\r\n", "\n").split("\n\n") if b.strip()]
    headers = {}
    if blocks:
        for line in blocks[-1].split("\n")[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
    return headers


def curl(args, body=None, timeout=30):
    """Run curl with extra `args`; returns a Response.

    Status is 0 when no HTTP answer came (refused, reset, TLS failure); the
    curl exit code and stderr are kept on the Response for assertions.
    """
    tmp = tempfile.mkdtemp(prefix="cell-curl-")
    try:
        hdr, out = os.path.join(tmp, "h"), os.path.join(tmp, "b")
        cmd = ["curl", "-sS", "--max-time", str(timeout), "-D", hdr, "-o", out,
               "-w", "%{http_code}", "-H", "Expect:"]
        if body is not None:
            if not isinstance(body, (bytes, str)):
                body = json.dumps(body)
                cmd += ["-H", "Content-Type: application/json"]
            path = os.path.join(tmp, "req")
            with open(path, "wb") as f:
                f.write(body.encode() if isinstance(body, str) else body)
            cmd += ["--data-binary", "@" + path]
        p = subprocess.run(cmd + list(args), capture_output=True, timeout=timeout + 10)
        code = p.stdout.decode().strip()
        status = int(code) if code.isdigit() else 0
        headers, data = {}, b""
        if os.path.exists(hdr):
            with open(hdr, errors="replace") as f:
                headers = _parse_curl_headers(f.read())
        if os.path.exists(out):
            with open(out, "rb") as f:
                data = f.read()
        r = Response(status, headers, data)
        r.curl_rc = p.returncode
        r.curl_err = p.stderr.decode(errors="replace")
        return r
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def curl_unix(sock, method, path, body=None, headers=None, timeout=30):
    """curl --unix-socket: the way the issue asks every endpoint to be checked."""
    args = ["--unix-socket", sock, "-X", method]
    for k, v in (headers or {}).items():
        args += ["-H", "%s: %s" % (k, v)]
    if method == "HEAD":
        args = ["--unix-socket", sock, "-I"]
    return curl(args + ["http://localhost" + path], body=body, timeout=timeout)


def curl_https(port, method, path, cert=None, key=None, body=None, headers=None, extra=(),
               timeout=30):
    """curl over HTTPS to 127.0.0.1:port, with a client certificate when given."""
    args = ["-k", "-X", method] + list(extra)
    if cert:
        args += ["--cert", cert, "--key", key]
    for k, v in (headers or {}).items():
        args += ["-H", "%s: %s" % (k, v)]
    return curl(args + ["https://127.0.0.1:%d%s" % (port, path)], body=body, timeout=timeout)


def pem_to_der(pem):
    """DER bytes of the first certificate in a PEM text or file path."""
    if isinstance(pem, bytes):
        pem = pem.decode()
    if "-----BEGIN" not in pem:
        with open(pem) as f:
            pem = f.read()
    return ssl.PEM_cert_to_DER_cert(pem[pem.index("-----BEGIN"):pem.index("-----END")] +
                                    "-----END CERTIFICATE-----\n")


def cert_fingerprint(pem):
    """LXD's certificate fingerprint: sha256 of the DER, lowercase hex."""
    import hashlib
    return hashlib.sha256(pem_to_der(pem)).hexdigest()


def cert_b64_der(pem):
    """The `certificate` field LXD clients POST: base64 of the DER."""
    import base64
    return base64.b64encode(pem_to_der(pem)).decode()


def port_open(port, host="127.0.0.1"):
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def wait_port(port, is_open=True, timeout=10, host="127.0.0.1"):
    """Wait until the port accepts (or refuses) connections; returns success."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if port_open(port, host) == is_open:
            return True
        time.sleep(0.02)
    return port_open(port, host) == is_open


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def wait_fds_settle(pid, baseline, slack=5, timeout=15):
    """Wait for a process's open fds to come back to baseline (+slack); returns the count."""
    deadline = time.time() + timeout
    n = fd_count(pid)
    while n > baseline + slack and time.time() < deadline:
        time.sleep(0.1)
        n = fd_count(pid)
    return n


def stop_checked(d, sig=signal.SIGTERM):
    """Stop a Celld, assert it exited 0 (stop() already fails on sanitizer reports)."""
    rc = d.stop(sig)
    assert rc == 0, "celld exited %s:\n%s" % (rc, d.stderr()[-4000:])


def enable_https_tls(celld, port=None, timeout=10):
    """Like Celld.enable_https, but waits with real TLS requests instead of a bare
    connect-and-close probe, so a test about something else never depends on how
    celld copes with connections dropped before the handshake (that has its own
    test: test_bad_input.py::test_https_port_survives_dropped_and_non_tls_connections)."""
    port = port or free_port()
    r = celld.request("PATCH", "/1.0", {"config": {"core.https_address": "127.0.0.1:%d" % port}})
    assert r.status == 200, r
    celld.https_port = port
    deadline = time.time() + timeout
    while time.time() < deadline:
        c = celld.https(port=port)
        try:
            c.request("GET", "/")
            if c.getresponse().status == 200:
                return port
        except OSError:
            time.sleep(0.02)
        finally:
            c.close()
    raise AssertionError("HTTPS did not come up on %d" % port)


def wait_https(port, host="127.0.0.1", timeout=10):
    """Wait until celld answers GET / over HTTPS on port; returns success.

    Prefer this to wait_port(port) for an HTTPS port (see enable_https_tls)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = time.time() + timeout
    while time.time() < deadline:
        c = http.client.HTTPSConnection(host, port, context=ctx, timeout=5)
        try:
            c.request("GET", "/")
            if c.getresponse().status == 200:
                return True
        except OSError:
            time.sleep(0.02)
        finally:
            c.close()
    return False
