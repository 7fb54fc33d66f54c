"""A small checkout service behind a feature flag, for ./scripts/demo.sh --flag.

    service.py FLAGS_FILE PORT [--bad]

It reads flag `new-checkout` through the OpenFeature SDK and the flagd provider in file mode,
which watches FLAGS_FILE and reloads it when rollout replaces it. Each request to
/checkout?user=ID gets the new checkout when the flag says so for that user (with --bad, the new
checkout fails one request in five). A traffic thread sends it about 100 requests a second for
random users, for at most ten minutes. /stats tells, over the last five seconds, the share of
requests that got the new checkout and the new checkout's error rate (null without requests).
"""
import json
import random
import sys
import threading
import time
import urllib.request
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from openfeature import api
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import ResolverType
from openfeature.evaluation_context import EvaluationContext

WINDOW = 5.0
TRAFFIC_LIMIT = 600.0

flags_file, port = sys.argv[1], int(sys.argv[2])
bad = "--bad" in sys.argv
api.set_provider_and_wait(
    FlagdProvider(resolver_type=ResolverType.FILE, offline_flag_source_path=flags_file, deadline_ms=200)
)
client = api.get_client()
lock = threading.Lock()
served = deque()  # (time, got the new checkout, failed)


def email(user):
    # One user in ten is staff.
    return f"{user}@example.com" if int(user.split("-")[1]) % 10 == 0 else f"{user}@mail.test"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/stats":
            return self.reply(200, stats())
        user = parse_qs(url.query).get("user", ["user-0"])[0]
        ctx = EvaluationContext(targeting_key=user, attributes={"email": email(user)})
        new = client.get_boolean_value("new-checkout", False, ctx)
        failed = new and bad and random.random() < 0.2
        with lock:
            served.append((time.monotonic(), new, failed))
        self.reply(500 if failed else 200, {"checkout": "new" if new else "old"})


def stats():
    now = time.monotonic()
    with lock:
        while served and served[0][0] < now - WINDOW:
            served.popleft()
        total = len(served)
        new = [s for s in served if s[1]]
    errors = sum(1 for s in new if s[2])
    return {
        "requests": total,
        "new_share": len(new) / total if total else None,
        "new_error_rate": errors / len(new) if new else None,
    }


def traffic():
    end = time.monotonic() + TRAFFIC_LIMIT
    while time.monotonic() < end:
        user = f"user-{random.randrange(10000)}"
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/checkout?user={user}", timeout=2).read()
        except Exception:
            pass
        time.sleep(0.01)


server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
threading.Thread(target=traffic, daemon=True).start()
server.serve_forever()
