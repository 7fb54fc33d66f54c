#!/usr/bin/env python3
"""A tiny HTTP service standing in for one track (stable or canary) of an application.

The end-to-end test lab starts two of these behind a real nginx and lets a real Prometheus
scrape them. Tests steer it through /control/* so that a canary can be made to fail or slow
down on demand, and read back what it served through /stats or /control/count.

Python 3 standard library only, so that the lab needs nothing beyond python3 on the machine.

    service.py --port P --track stable|canary --version V [--latency-ms MS]

`--port 0` lets the kernel pick a free port; the port actually bound is always announced as
the first line on stdout ("listening 127.0.0.1:PORT"), which doubles as the readiness signal.
"""

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# Failure rates are kept as integers in millionths so that "every k-th request fails" stays
# exact: adding 0.1 ten times as a float does not reach 1.0.
SCALE = 1_000_000

# Enough samples for a stable p99 while keeping /stats and /metrics cheap to compute.
LATENCY_WINDOW = 10_000

# Upper bounds of the latency histogram, in seconds; chosen around what tests inject.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class State:
    """Everything the handlers share. One lock: the service is tiny and never the bottleneck."""

    def __init__(self, track, version, latency_ms):
        self.track = track
        self.version = version
        self.lock = threading.Lock()
        self.fail_per_million = 0
        self.fail_accumulator = 0
        self.latency_s = latency_ms / 1000.0
        # Lifetime totals, never reset: Prometheus counters must only go up, or rate() sees a
        # counter reset and the numbers a test asserts on become hard to predict.
        self.total_by_code = {200: 0, 500: 0}
        self.bucket_counts = [0] * len(BUCKETS)
        self.duration_count = 0
        self.duration_sum = 0.0
        # Since start or the last /control/reset: what /stats and /control/count report.
        self.since_reset_by_code = {200: 0, 500: 0}
        self.since_reset_by_method = {}
        self.recent_durations = deque(maxlen=LATENCY_WINDOW)

    def next_status(self):
        """Decides whether this `/` request fails, spreading failures evenly over requests."""
        with self.lock:
            self.fail_accumulator += self.fail_per_million
            if self.fail_accumulator >= SCALE:
                self.fail_accumulator -= SCALE
                return 500
            return 200

    def record(self, status, seconds, method="GET"):
        with self.lock:
            self.since_reset_by_method[method] = self.since_reset_by_method.get(method, 0) + 1
            self.total_by_code[status] = self.total_by_code.get(status, 0) + 1
            self.since_reset_by_code[status] = self.since_reset_by_code.get(status, 0) + 1
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    self.bucket_counts[i] += 1
            self.duration_count += 1
            self.duration_sum += seconds
            self.recent_durations.append(seconds)

    def p99_seconds(self):
        """Nearest-rank p99 of the recent window; call with the lock held."""
        if not self.recent_durations:
            return 0.0
        ordered = sorted(self.recent_durations)
        rank = max(1, -(-99 * len(ordered) // 100))  # ceil(0.99 * n) without floats
        return ordered[rank - 1]

    def stats(self):
        with self.lock:
            requests = sum(self.since_reset_by_code.values())
            errors = sum(n for code, n in self.since_reset_by_code.items() if code >= 500)
            return {
                "track": self.track,
                "version": self.version,
                "requests": requests,
                "errors": errors,
                "error_rate": errors / requests if requests else 0.0,
                "latency_p99_ms": round(self.p99_seconds() * 1000.0, 3),
            }

    def counts(self):
        with self.lock:
            counts = {str(code): n for code, n in sorted(self.since_reset_by_code.items())}
            counts["total"] = sum(self.since_reset_by_code.values())
            counts["by_method"] = dict(self.since_reset_by_method)
            return counts

    def metrics(self):
        track = self.track
        with self.lock:
            lines = [
                "# HELP http_requests_total Requests to / by response status code.",
                "# TYPE http_requests_total counter",
            ]
            for code, n in sorted(self.total_by_code.items()):
                lines.append(f'http_requests_total{{track="{track}",code="{code}"}} {n}')
            lines += [
                "# HELP latency_seconds p99 latency of / over the recent requests.",
                "# TYPE latency_seconds gauge",
                f'latency_seconds{{track="{track}",quantile="0.99"}} {self.p99_seconds()}',
                "# HELP http_request_duration_seconds Time spent answering /.",
                "# TYPE http_request_duration_seconds histogram",
            ]
            for bound, n in zip(BUCKETS, self.bucket_counts):
                lines.append(
                    f'http_request_duration_seconds_bucket{{track="{track}",le="{bound}"}} {n}'
                )
            lines += [
                f'http_request_duration_seconds_bucket{{track="{track}",le="+Inf"}} '
                f"{self.duration_count}",
                f'http_request_duration_seconds_sum{{track="{track}"}} {self.duration_sum}',
                f'http_request_duration_seconds_count{{track="{track}"}} {self.duration_count}',
                "# HELP service_info The version this service answers with.",
                "# TYPE service_info gauge",
                f'service_info{{track="{track}",version="{self.version}"}} 1',
            ]
        return "\n".join(lines) + "\n"

    def reset(self):
        with self.lock:
            self.since_reset_by_code = {200: 0, 500: 0}
            self.since_reset_by_method = {}
            self.recent_durations.clear()
            self.fail_accumulator = 0


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.0 closes every connection after one answer, which is what nginx's proxy and the
    # lab's raw-socket client both expect; no keep-alive bookkeeping needed.
    protocol_version = "HTTP/1.0"
    state: State = None  # set before the server starts

    def log_message(self, format, *args):
        # Quiet: ~50 requests a second from the traffic generator would drown the test logs.
        pass

    def send(self, status, body, content_type="text/plain; charset=utf-8"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Track", self.state.track)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_json(self, value):
        self.send(200, json.dumps(value) + "\n", "application/json")

    def do_GET(self):
        path = urlsplit(self.path).path
        state = self.state
        if path == "/":
            self.answer_root()
        elif path == "/metrics":
            self.send(200, state.metrics(), "text/plain; version=0.0.4; charset=utf-8")
        elif path == "/stats":
            self.send_json(state.stats())
        elif path == "/control/count":
            self.send_json(state.counts())
        else:
            self.send(404, "not found\n")

    do_HEAD = do_GET

    def answer_root(self):
        """`/`, by any method: the version, after the configured latency, failing as configured."""
        state = self.state
        started = time.monotonic()
        status = state.next_status()
        if state.latency_s > 0:
            time.sleep(state.latency_s)
        # The body names the version even on a 500, so callers can tell which track failed.
        self.send(status, state.version + "\n")
        state.record(status, time.monotonic() - started, self.command)

    def do_POST(self):
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        state = self.state
        if url.path == "/":
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            self.answer_root()
        elif url.path == "/control/fail":
            rate = self.number(query, "rate", 0.0, 1.0)
            if rate is None:
                return
            with state.lock:
                state.fail_per_million = round(rate * SCALE)
                state.fail_accumulator = 0
            self.send_json({"fail_rate": rate})
        elif url.path == "/control/latency":
            ms = self.number(query, "ms", 0.0, 60_000.0)
            if ms is None:
                return
            with state.lock:
                state.latency_s = ms / 1000.0
            self.send_json({"latency_ms": ms})
        elif url.path == "/control/reset":
            state.reset()
            self.send_json(state.counts())
        else:
            self.send(404, "not found\n")

    def number(self, query, name, low, high):
        """Parses ?name=N within [low, high], answering 400 itself when it is not."""
        try:
            value = float(query[name][0])
        except (KeyError, IndexError, ValueError):
            value = None
        if value is None or not low <= value <= high:
            self.send(400, f"{name} must be a number in [{low}, {high}]\n")
            return None
        return value


def exit_with_parent(server, parent):
    """Stops the service when the process that started it is gone (e.g. a SIGKILLed test run),
    so a crashed test never leaves services listening behind it."""
    while os.getppid() == parent:
        time.sleep(0.5)
    server.shutdown()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--track", choices=("stable", "canary"), required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()

    Handler.state = State(args.track, args.version, args.latency_ms)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True

    def stop(signum, frame):
        # shutdown() waits for serve_forever() to return, and serve_forever() runs on this very
        # thread, so calling it here directly would deadlock.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    threading.Thread(target=exit_with_parent, args=(server, os.getppid()), daemon=True).start()

    print(f"listening 127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
