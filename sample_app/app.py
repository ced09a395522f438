"""Sample HTTP service that fleetops.rollback deploys, breaks and rolls back (stdlib only).

It runs from a release directory (<host_root>/srv/app/releases/<N>/app.py, usually through the
`current` symlink) and serves on 127.0.0.1:

  GET /         the application's work: 200 {"app": ..., "version": ...}, or 500 for an injected error
  GET /health   200 {"status": "ok", "version": ...} or 503 {"status": "fail", "reason": ...}
  GET /version  200 {"version": ..., "release": <release directory name>}
  GET /metrics  Prometheus text format: app_requests_total{handler,code} (a counter),
                app_request_duration_seconds{handler} (a histogram), app_info{version}, app_healthy

The config is read once at start: <host_root>/etc/app/app.env, then every
<host_root>/etc/app/conf.d/*.env in sorted order (later files win). Health fails when a key that
the release's release.json requires is missing, or when WORKERS is not a positive integer.
Config values are never written anywhere: logs and responses name keys only.

Two config keys inject trouble that /health does not see, only the metrics do (release 4 ships
ERROR_RATE=0.3; any conf.d file can set them):

  ERROR_RATE   a fraction from 0 to 1: that share of the requests to / answer 500, spread evenly
               (deterministic: with 0.25 every 4th request fails)
  LATENCY_MS   milliseconds added to every request to /

A value that is not a number in range fails /health, like a bad WORKERS.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def log(message):
    sys.stderr.write("%s app[%d]: %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S%z"), os.getpid(), message))
    sys.stderr.flush()


def parse_env(text):
    """KEY=VALUE lines; '#' starts a comment line; optional matching quotes around the value."""
    values = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.strip()
        if key.startswith("export "):
            key = key[len("export "):].strip()
        if not _KEY.match(key):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values


def load_config(host_root):
    """(config dict, list of files read, list of problems) from app.env and conf.d/*.env."""
    etc = os.path.join(host_root, "etc", "app")
    files = [os.path.join(etc, "app.env")]
    conf_d = os.path.join(etc, "conf.d")
    if os.path.isdir(conf_d):
        files += [os.path.join(conf_d, name) for name in sorted(os.listdir(conf_d)) if name.endswith(".env")]
    config, read, problems = {}, [], []
    for path in files:
        try:
            with open(path, encoding="utf-8") as stream:
                config.update(parse_env(stream.read()))
            read.append(path)
        except FileNotFoundError:
            problems.append("config file %s not found" % path)
        except (OSError, UnicodeDecodeError) as exc:
            problems.append("config file %s unreadable: %s" % (path, exc.__class__.__name__))
    return config, read, problems


def load_release(release_dir):
    path = os.path.join(release_dir, "release.json")
    try:
        with open(path, encoding="utf-8") as stream:
            meta = json.load(stream)
        version = str(meta["version"])
        requires = [str(key) for key in meta.get("requires", [])]
        return version, requires, None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return "unknown", [], "release metadata %s unusable: %s" % (path, exc.__class__.__name__)


def health_verdict(config, requires, release_problem):
    """None when healthy, else the reason (names keys, never values of secrets)."""
    if release_problem:
        return release_problem
    for key in requires:
        if key not in config or config[key] == "":
            return "missing config key %s" % key
    workers = config.get("WORKERS", "1")
    if not workers.isdigit() or int(workers) < 1:
        return "config WORKERS must be a positive integer, got %r" % workers[:32]
    try:
        error_rate = float(config.get("ERROR_RATE", "0"))
    except ValueError:
        error_rate = -1.0
    if not 0.0 <= error_rate <= 1.0:
        return "config ERROR_RATE must be a fraction from 0 to 1, got %r" % config.get("ERROR_RATE", "")[:32]
    latency = config.get("LATENCY_MS", "0")
    if not latency.isdigit():
        return "config LATENCY_MS must be a whole number of milliseconds, got %r" % latency[:32]
    return None


# Upper bounds (seconds) of the request duration histogram's buckets.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Label values of `handler`: the known paths, everything else is "other" (bounded label values).
HANDLERS = ("/", "/health", "/version", "/metrics")


class App:
    def __init__(self, host_root, release_dir):
        self.release = os.path.basename(release_dir)
        self.version, requires, release_problem = load_release(release_dir)
        config, self.config_files, problems = load_config(host_root)
        for problem in problems:
            log(problem)
        self.config_keys = sorted(config)
        self.reason = health_verdict(config, requires, release_problem)
        # Injected trouble (only when the config is valid: a bad value already fails /health).
        self.error_rate = 0.0 if self.reason else float(config.get("ERROR_RATE", "0") or 0)
        self.latency = 0.0 if self.reason else int(config.get("LATENCY_MS", "0") or 0) / 1000.0
        self.started = time.time()
        self._lock = threading.Lock()
        self._counts = {}
        self._durations = {}  # handler -> [bucket counts..., sum, count]
        self._work = 0

    def injected_error(self):
        """True for the requests to / that ERROR_RATE makes fail, spread evenly over the sequence."""
        with self._lock:
            self._work += 1
            n = self._work
        return int(n * self.error_rate) > int((n - 1) * self.error_rate)

    def count(self, handler, code, seconds):
        with self._lock:
            key = (handler, code)
            self._counts[key] = self._counts.get(key, 0) + 1
            hist = self._durations.setdefault(handler, [0] * len(BUCKETS) + [0.0, 0])
            for index, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    hist[index] += 1
            hist[-2] += seconds
            hist[-1] += 1

    def metrics(self):
        with self._lock:
            counts = sorted(self._counts.items())
            durations = sorted((h, list(v)) for h, v in self._durations.items())
        lines = [
            "# HELP app_requests_total HTTP requests served, by handler and status code.",
            "# TYPE app_requests_total counter",
        ]
        lines += ['app_requests_total{code="%d",handler="%s"} %d' % (code, handler, n)
                  for (handler, code), n in counts]
        lines += [
            "# HELP app_request_duration_seconds Time to answer a request, by handler.",
            "# TYPE app_request_duration_seconds histogram",
        ]
        for handler, hist in durations:
            for index, bound in enumerate(BUCKETS):
                lines.append('app_request_duration_seconds_bucket{handler="%s",le="%s"} %d' % (handler, bound, hist[index]))
            lines.append('app_request_duration_seconds_bucket{handler="%s",le="+Inf"} %d' % (handler, hist[-1]))
            lines.append('app_request_duration_seconds_sum{handler="%s"} %.6f' % (handler, hist[-2]))
            lines.append('app_request_duration_seconds_count{handler="%s"} %d' % (handler, hist[-1]))
        lines += [
            "# HELP app_info Version of the running release.",
            "# TYPE app_info gauge",
            'app_info{version="%s"} 1' % self.version,
            "# HELP app_healthy 1 when /health answers 200, else 0.",
            "# TYPE app_healthy gauge",
            "app_healthy %d" % (0 if self.reason else 1),
            "# HELP app_start_time_seconds Start time of the process since the epoch.",
            "# TYPE app_start_time_seconds gauge",
            "app_start_time_seconds %.3f" % self.started,
        ]
        return "\n".join(lines) + "\n"


def make_handler(app):
    class Handler(BaseHTTPRequestHandler):
        server_version = "fleetops-sample-app"
        sys_version = ""
        protocol_version = "HTTP/1.1"

        def _send(self, code, body, content_type="application/json"):
            data = body if isinstance(body, bytes) else body.encode("utf-8")
            # Counted before the answer leaves: a client's next request (say /metrics) must already see it.
            path = self.path.split("?", 1)[0]
            app.count(path if path in HANDLERS else "other", code, time.monotonic() - self._started)
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _json(self, code, payload):
            self._send(code, json.dumps(payload, sort_keys=True) + "\n")

        def do_GET(self):  # noqa: N802 (http.server naming)
            self._started = time.monotonic()  # pylint: disable=attribute-defined-outside-init
            path = self.path.split("?", 1)[0]
            if path == "/":
                if app.latency:
                    time.sleep(app.latency)  # injected latency (LATENCY_MS): the point of this request
                if app.injected_error():
                    self._json(500, {"status": "error", "reason": "injected error (ERROR_RATE)"})
                else:
                    self._json(200, {"app": "sample", "version": app.version})
            elif path == "/health":
                if app.reason:
                    self._json(503, {"status": "fail", "reason": app.reason, "version": app.version})
                else:
                    self._json(200, {"status": "ok", "version": app.version})
            elif path == "/version":
                self._json(200, {"version": app.version, "release": app.release})
            elif path == "/metrics":
                self._send(200, app.metrics(), "text/plain; version=0.0.4; charset=utf-8")
            else:
                self._json(404, {"status": "not found", "path": path})

        do_HEAD = do_GET

        def log_message(self, format, *args):  # pylint: disable=redefined-builtin
            # Errors from http.server; query strings are cut since a query could carry anything.
            log(re.sub(r"\?\S*", "?...", format % args))

        def log_request(self, code="-", size="-"):
            log('%s "%s %s" %s' % (self.client_address[0], self.command, self.path.split("?", 1)[0], code))

    return Handler


def _terminate(signum, frame):
    raise SystemExit(0)


def main(argv=None):
    here = os.path.dirname(os.path.realpath(__file__))
    default_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(here))))
    parser = argparse.ArgumentParser(description="fleetops sample application")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", default=default_root, help="host root (default: derived from this file's path)")
    parser.add_argument("--bind", default="127.0.0.1")
    args = parser.parse_args(argv)

    app = App(os.path.abspath(args.root), here)
    log("release %s version %s starting on %s:%d; config files: %s; keys: %s"
        % (app.release, app.version, args.bind, args.port, ", ".join(app.config_files) or "none",
           ", ".join(app.config_keys) or "none"))
    if app.reason:
        log("health: fail (%s)" % app.reason)
    else:
        log("health: ok")

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    try:
        server = ThreadingHTTPServer((args.bind, args.port), make_handler(app))
    except OSError as exc:
        log("cannot listen on %s:%d: %s" % (args.bind, args.port, exc.strerror or exc))
        return 1
    server.daemon_threads = True
    try:
        server.serve_forever(poll_interval=0.5)
    except SystemExit:
        pass
    finally:
        server.server_close()
        log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
