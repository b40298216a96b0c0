"""Websocket connections to celld over its unix socket or HTTPS."""
import socket
import ssl

import websocket


def ws_unix(celld, path, timeout=10):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(celld.sock)
    ws = websocket.WebSocket()
    ws.settimeout(timeout)
    ws.connect("ws://localhost" + path, socket=s)
    return ws


def ws_https(port, path, cert=None, key=None, timeout=10):
    sslopt = {"cert_reqs": ssl.CERT_NONE, "check_hostname": False}
    if cert:
        sslopt.update(certfile=cert, keyfile=key)
    ws = websocket.WebSocket(sslopt=sslopt)
    ws.settimeout(timeout)
    ws.connect("wss://127.0.0.1:%d%s" % (port, path))
    return ws
