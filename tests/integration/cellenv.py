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
