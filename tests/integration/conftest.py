import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from cellenv import Celld  # noqa: E402
import images_fixture as fx  # noqa: E402


@pytest.fixture
def celld():
    d = Celld()
    try:
        d.start()
        yield d
        rc = d.stop()
        assert rc == 0, "celld exited %s:\n%s" % (rc, d.stderr()[-4000:])
    finally:
        fx.cleanup_celld(d)   # containers, mounts and loop devices too
