"""Real HTTP endpoints on 127.0.0.1 for the health gate tests (a ThreadingHTTPServer in a thread).

Paths (every path counts its hits, see `hits`):
  /ok                 200 with a JSON body {"status": "ok"}
  /status/<code>      that status
  /flap/<key>         200, 500, 200, 500, ... per key, starting with 200
  /recover/<key>/<n>  500 for the first n requests of key, then 200
  /slow/<ms>          200 after <ms> milliseconds
  /host/<name>        the status set in `host_status[name]` (200 when unset); a value "slow:<ms>" answers
                      200 after <ms> milliseconds
  /echo-headers       200 with the request's header names (never values) in the body
  /huge/<mb>          200 with a body of <mb> MiB
  /binary             200 with a body that is not UTF-8

`RawServer` is a TCP server that misbehaves below HTTP: it accepts and never answers ("hang"), resets every
connection ("reset") or sends an answer one byte at a time, forever ("drip").
"""
from __future__ import annotations

import collections
import json
import socket
import ssl
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    server_version = "health-endpoints/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass

    def _answer(self, status, body=b"", content_type="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _delay(self, ms):
        # Simulates a slow application; the server's own stop event ends the wait early on shutdown.
        self.server.stopping.wait(ms / 1000.0)

    def do_GET(self):  # noqa: N802 - http.server's naming
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        parts = [p for p in path.split("/") if p]
        count = owner.hit(path)
        headers = {"requests": str(count)}
        if parts == ["ok"]:
            return self._answer(200, json.dumps({"status": "ok", **headers}).encode(), "application/json")
        if len(parts) == 2 and parts[0] == "status":
            return self._answer(int(parts[1]), b"status " + parts[1].encode())
        if len(parts) == 2 and parts[0] == "flap":
            status = 200 if count % 2 == 1 else 500
            return self._answer(status, b"flap %d" % status)
        if len(parts) == 3 and parts[0] == "recover":
            status = 500 if count <= int(parts[2]) else 200
            return self._answer(status, b"recover %d" % status)
        if len(parts) == 2 and parts[0] == "slow":
            self._delay(int(parts[1]))
            return self._answer(200, b"slow ok")
        if len(parts) == 2 and parts[0] == "host":
            setting = owner.host_status.get(parts[1], 200)
            if isinstance(setting, str) and setting.startswith("slow:"):
                self._delay(int(setting.split(":", 1)[1]))
                return self._answer(200, b"slow ok")
            return self._answer(int(setting), b"host %s" % parts[1].encode())
        if len(parts) == 2 and parts[0] == "huge":
            return self._answer(200, b"x" * (int(parts[1]) * 1024 * 1024))
        if parts == ["binary"]:
            return self._answer(200, b"\xff\xfe\x00status \xc3\x28 ok \x80\x81", "application/octet-stream")
        if parts == ["echo-headers"]:
            return self._answer(200, json.dumps(sorted(self.headers.keys())).encode(), "application/json")
        return self._answer(404, b"not found")

    do_HEAD = do_GET
    do_POST = do_GET


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a fleet's worth of concurrent probes must not overflow the listen backlog

    def handle_error(self, request, client_address):
        # A client that gave up (its timeout passed) is part of the tests, not an error of the server.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError, ssl.SSLError)):
            super().handle_error(request, client_address)


class HealthEndpoints:
    """Start with `with HealthEndpoints() as server:`; `server.url("/ok")` is a full URL."""

    def __init__(self, tls=None):
        """`tls`: (certfile, keyfile) to serve https instead of http."""
        self.host_status = {}
        self._hits = collections.Counter()
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._httpd.stopping = threading.Event()
        self.port = self._httpd.server_address[1]
        self.scheme = "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def hit(self, path):
        with self._lock:
            self._hits[path] += 1
            return self._hits[path]

    def hits(self, path):
        with self._lock:
            return self._hits[path]

    def url(self, path):
        return "%s://127.0.0.1:%d%s" % (self.scheme, self.port, path)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._httpd.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def closed_port():
    """A TCP port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Listener:
    """A plain TCP listener on 127.0.0.1 that accepts and closes connections (for tcp checks)."""

    def __init__(self):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        self._sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _addr = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            conn.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


class RawServer:
    """A TCP server on 127.0.0.1 that misbehaves below HTTP, one of:
    "hang": accepts, reads the request and never answers (the connection stays open);
    "reset": accepts, reads the request and resets the connection (RST, not a clean close);
    "drip": answers a 200 one byte at a time, a byte every `pause` seconds, forever.
    `accepted` counts the connections; stopping closes every socket."""

    def __init__(self, mode, pause=0.2):
        self.mode = mode
        self.pause = pause
        self.accepted = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def _serve(self):
        self._sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _addr = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            with self._lock:
                self.accepted += 1
                self._conns.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        try:
            conn.settimeout(2)
            try:
                conn.recv(65536)
            except OSError:
                pass
            if self.mode == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
            elif self.mode == "drip":
                answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Drip: " + b"a" * 100000
                for byte in answer:
                    if self._stop.wait(self.pause):
                        break
                    conn.sendall(bytes([byte]))
            else:
                self._stop.wait()
        except OSError:
            pass  # the client gave up: that is what these modes test

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)
        with self._lock:
            for conn in self._conns:
                try:
                    conn.close()
                except OSError:
                    pass
        self._sock.close()
