"""A local webhook receiver for the notification tests: a real HTTP server on 127.0.0.1 in a thread.

Every POST is kept (path, headers, parsed JSON body). A path can be told to answer with a sequence of statuses
(`plan("/flaky", [500, 500, 200])`: the last one repeats), with a Retry-After header on the errors
(`retry_after=2`), or to hold a request longer than the client waits (`plan("/slow", [200], delay=5)`).
Waiting for posts polls with a deadline; nothing sleeps a fixed time.

    python tests/integration/webhook_receiver.py    # serve on a free port and print each post (by hand)
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self):
        self.posts = []
        self._plans = {}
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw.decode("utf-8"))
                except ValueError:
                    body = None
                status, delay, retry_after = receiver._answer(self.path)
                with receiver._cond:
                    receiver.posts.append({"path": self.path, "headers": dict(self.headers.items()), "raw": raw,
                                           "body": body, "status": status, "at": time.monotonic()})
                    receiver._cond.notify_all()
                if delay:
                    receiver._release.wait(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain")
                    if retry_after is not None and status >= 300:
                        self.send_header("Retry-After", str(retry_after))
                    self.end_headers()
                    self.wfile.write(b"ok" if status < 300 else b"no")
                except OSError:
                    pass  # the client gave up waiting: that is what a delay tests

            def log_message(self, *args):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path="/hook"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def plan(self, path, statuses, delay=0.0, retry_after=None):
        with self._lock:
            self._plans[path] = {"statuses": list(statuses), "delay": delay, "retry_after": retry_after}

    def _answer(self, path):
        with self._lock:
            plan = self._plans.get(path.split("?")[0])
            if not plan:
                return 200, 0.0, None
            status = plan["statuses"].pop(0) if len(plan["statuses"]) > 1 else plan["statuses"][0]
            return status, plan["delay"], plan["retry_after"]

    def bodies(self, path=None):
        with self._lock:
            return [p["body"] for p in self.posts if path is None or p["path"] == path]

    def events(self, path=None):
        return [b.get("event") for b in self.bodies(path) if isinstance(b, dict)]

    def wait_for(self, count, timeout=10.0, path=None):
        """Wait until at least `count` posts (to `path`) arrived; returns them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [p for p in self.posts if path is None or p["path"] == path]
                left = deadline - time.monotonic()
                if len(found) >= count or left <= 0:
                    return found
                self._cond.wait(left)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
        return False


if __name__ == "__main__":
    with Receiver() as served:
        print("listening on %s" % served.url("/"), flush=True)
        seen = 0
        try:
            while True:
                posts = served.wait_for(seen + 1, timeout=3600)
                for post in posts[seen:]:
                    print(post["path"], json.dumps(post["body"], indent=2), flush=True)
                seen = len(posts)
        except KeyboardInterrupt:
            pass
