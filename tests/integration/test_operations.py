"""Operations framework and events, end to end over the unix socket.

Slow actions come in later issues; /internal/testing/operations (enabled by
CELL_TEST_HOOKS=1) gives operations whose duration, failure, cancellability
and websockets the tests control.
"""
import json
import threading
import time

import pytest
import websocket

from wsutil import ws_unix


def start_op(celld, **body):
    r = celld.request("POST", "/internal/testing/operations", body)
    assert r.status == 202, r
    assert r.json["type"] == "async"
    assert r.json["status_code"] == 100
    assert r.headers["location"] == r.json["operation"]
    assert r.json["operation"] == "/1.0/operations/" + r.metadata["id"]
    return r.json["operation"], r.metadata


def test_async_operation_fields_and_wait(celld):
    url, op = start_op(celld, duration_ms=300)
    for key in ("id", "class", "description", "created_at", "updated_at", "status",
                "status_code", "resources", "metadata", "may_cancel", "err", "location"):
        assert key in op, key
    assert op["class"] == "task"
    assert op["status"] == "Running" and op["status_code"] == 103
    listing = celld.get("/1.0/operations").metadata
    assert url in listing["running"]
    full = celld.get("/1.0/operations?recursion=1").metadata
    assert any(o["id"] == op["id"] for o in full["running"])
    t0 = time.time()
    done = celld.wait_op(url)
    assert done["status"] == "Success" and done["status_code"] == 200, done
    assert 0.2 < time.time() - t0 < 5
    assert done["err"] == ""
    assert celld.get(url).metadata["status"] == "Success"


def test_wait_timeout_returns_current_state(celld):
    url, _ = start_op(celld, duration_ms=3000, cancellable=True)
    t0 = time.time()
    r = celld.get(url + "/wait?timeout=0.3")
    assert r.status == 200
    assert r.metadata["status"] == "Running"
    assert time.time() - t0 < 2
    assert celld.request("DELETE", url).status == 200


def test_progress_reported_in_metadata(celld):
    url, _ = start_op(celld, duration_ms=1500)
    time.sleep(0.5)
    md = celld.get(url).metadata["metadata"]
    assert md["progress"].startswith("sleeping: ")
    celld.wait_op(url)


def test_failure_carries_error(celld):
    url, _ = start_op(celld, duration_ms=50, fail="disk on fire")
    done = celld.wait_op(url)
    assert done["status"] == "Failure" and done["status_code"] == 400
    assert done["err"] == "disk on fire"


def test_cancel(celld):
    url, op = start_op(celld, duration_ms=5000, cancellable=True)
    assert op["may_cancel"] is True
    time.sleep(0.05)
    r = celld.request("DELETE", url)
    assert r.status == 200, r
    done = celld.wait_op(url)
    assert done["status"] == "Cancelled" and done["status_code"] == 401


def test_cancel_refused_when_not_cancellable(celld):
    url, _ = start_op(celld, duration_ms=400)
    r = celld.request("DELETE", url)
    assert r.status == 400
    assert "can't be cancelled" in r.json["error"]
    assert celld.wait_op(url)["status"] == "Success"


def test_unknown_operation(celld):
    for method, path in (("GET", ""), ("DELETE", ""), ("GET", "/wait")):
        r = celld.request(method, "/1.0/operations/00000000-0000-0000-0000-000000000000" + path)
        assert r.status == 404, (method, path, r)
        assert r.json["type"] == "error" and r.json["error_code"] == 404


def test_finished_operations_kept_five_seconds(celld):
    url, _ = start_op(celld, duration_ms=10)
    celld.wait_op(url)
    time.sleep(3.5)
    assert celld.get(url).status == 200
    time.sleep(2.5)
    assert celld.get(url).status == 404


def test_many_waiters_and_client_leaving(celld):
    url, _ = start_op(celld, duration_ms=500)
    # A waiter that disconnects must not break the others.
    c = celld.conn()
    c.request("GET", url + "/wait")
    c.close()
    results = []
    threads = [threading.Thread(target=lambda: results.append(celld.wait_op(url)["status"]))
               for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["Success"] * 10


def test_events_operation_feed(celld):
    ws = ws_unix(celld, "/1.0/events?type=operation")
    url, op = start_op(celld, duration_ms=100)
    seen = []
    deadline = time.time() + 10
    while time.time() < deadline:
        ev = json.loads(ws.recv())
        assert ev["type"] == "operation"
        assert "timestamp" in ev
        if ev["metadata"]["id"] == op["id"]:
            seen.append(ev["metadata"]["status"])
            if ev["metadata"]["status"] == "Success":
                break
    ws.close()
    assert "Running" in seen and seen[-1] == "Success", seen


def test_events_type_filter(celld):
    ws = ws_unix(celld, "/1.0/events?type=lifecycle")
    ws.settimeout(1)
    start_op(celld, duration_ms=10)
    with pytest.raises(websocket.WebSocketTimeoutException):
        ws.recv()
    ws.close()
    with pytest.raises(websocket.WebSocketException):
        ws_unix(celld, "/1.0/events?type=bogus")


def test_events_logging(celld):
    ws = ws_unix(celld, "/1.0/events?type=logging")
    url, _ = start_op(celld, duration_ms=10)
    deadline = time.time() + 10
    while time.time() < deadline:
        ev = json.loads(ws.recv())
        assert ev["type"] == "logging"
        if "finished" in ev["metadata"]["message"]:
            assert ev["metadata"]["level"] in ("debug", "info")
            break
    else:
        pytest.fail("no logging event")
    ws.close()


def test_slow_event_subscriber_does_not_stall(celld):
    # Subscribe and never read, while operations churn out events.
    stalled = ws_unix(celld, "/1.0/events")
    stalled.sock.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 4096)
    for _ in range(200):
        start_op(celld, duration_ms=0)
    t0 = time.time()
    for _ in range(50):
        assert celld.get("/1.0").status == 200
    assert time.time() - t0 < 5
    stalled.close()


def test_operation_websocket_secrets(celld):
    url, op = start_op(celld, websocket=True)
    assert op["class"] == "websocket"
    fds = op["metadata"]["fds"]
    assert set(fds) == {"0", "control"}
    # A wrong secret is refused, the right one accepted exactly once.
    with pytest.raises(websocket.WebSocketException):
        ws_unix(celld, url + "/websocket?secret=nope")
    data = ws_unix(celld, url + "/websocket?secret=" + fds["0"])
    payload = bytes(range(256)) * 64
    data.send_binary(payload)
    assert data.recv() == payload
    with pytest.raises(websocket.WebSocketException):
        ws_unix(celld, url + "/websocket?secret=" + fds["0"])
    control = ws_unix(celld, url + "/websocket?secret=" + fds["control"])
    control.close()
    assert celld.wait_op(url)["status"] == "Success"
    data.close()


def test_websocket_endpoint_without_upgrade(celld):
    url, op = start_op(celld, websocket=True)
    r = celld.get(url + "/websocket?secret=" + op["metadata"]["fds"]["0"])
    assert r.status == 400
    ws_unix(celld, url + "/websocket?secret=" + op["metadata"]["fds"]["control"]).close()
