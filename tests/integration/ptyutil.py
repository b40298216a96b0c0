"""Run a program on a real pseudo-terminal (python's pty), as a user at a
terminal would: set the window size, type bytes, wait for output, collect
the exit code.  Used by the exec, console and file edit tests."""
import fcntl
import os
import pty
import select
import signal
import struct
import termios
import time


class PtyProc:
    def __init__(self, argv, env=None, rows=24, cols=80):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:   # child: the pty is our controlling terminal
            try:
                os.execve(argv[0], argv, env or os.environ)
            finally:
                os._exit(127)
        self.set_size(rows, cols)
        self.out = b""
        self.code = None

    def set_size(self, rows, cols):
        """Resize the terminal; the kernel sends SIGWINCH to its foreground group."""
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def write(self, data):
        os.write(self.fd, data)

    def _read_some(self, timeout):
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return True
        try:
            d = os.read(self.fd, 65536)
        except OSError:   # EIO: the other side is gone
            return False
        if not d:
            return False
        self.out += d
        return True

    def expect(self, pattern, timeout=20):
        """Wait until pattern (bytes) shows up in the output; returns all output so far."""
        deadline = time.time() + timeout
        while pattern not in self.out and time.time() < deadline:
            if not self._read_some(0.1):
                break
        if pattern not in self.out:
            raise AssertionError("%r not seen within %ss; output: %r" % (pattern, timeout,
                                                                          self.out[-2000:]))
        return self.out

    def wait(self, timeout=30):
        """Exit code, reading what is left meanwhile (a full pty would block the child)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.code = os.waitstatus_to_exitcode(st)
                while self._read_some(0.05):
                    pass
                os.close(self.fd)
                return self.code
            self._read_some(0.05)
        self.kill()
        raise AssertionError("process did not exit within %ss; output: %r" % (timeout, self.out[-2000:]))

    def kill(self):
        if self.code is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except OSError:
                pass
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.code = -9
