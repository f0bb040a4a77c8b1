"""A tiny consumer of tool calls for `skein bridge`, with nothing but Python's standard
library: POST /sessions/stream takes a CloudEvent whose data holds a `tool_call`, runs
it, and answers {"result": ...}. A repeated Idempotency-Key gets the stored answer, and
the tool does not run again.

usage: python3 consumer.py [--port 7000] [--log FILE] [--delay-ms N] [--token TOKEN]
                          [--hold-at N --hold-ms MS] [--fail-first N]

--log appends one JSON line per request: {"key", "call", "repeat"} (repeat: the key
was answered before). --delay-ms makes each tool call take that long. --hold-at N
holds the answer to the Nth tool call for --hold-ms, the moment to kill the bridge
and see that a restarted one loses nothing and repeats nothing already answered.
--fail-first N answers the first N requests with 503, to see the bridge send again.
The log's lines also carry the context headers the bridge sent (user, project,
workspace, session), and failed requests appear with "failed": true.
"""

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import time

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=7000)
parser.add_argument("--log")
parser.add_argument("--delay-ms", type=int, default=0)
parser.add_argument("--token")
parser.add_argument("--hold-at", type=int, default=0)
parser.add_argument("--hold-ms", type=int, default=3000)
parser.add_argument("--fail-first", type=int, default=0)
args = parser.parse_args()

answers = {}
failed = [0]
lock = threading.Lock()
log = open(args.log, "a", buffering=1) if args.log else None

TOOLS = {
    "add": lambda a, b: a + b,
    "echo": lambda **kw: kw,
}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        if self.path != "/sessions/stream":
            return self.reply(404, {"error": "not_found", "message": self.path})
        if args.token and self.headers.get("authorization") != f"Bearer {args.token}":
            return self.reply(401, {"error": "unauthorized", "message": "bad token"})
        length = int(self.headers.get("content-length", 0))
        try:
            event = json.loads(self.rfile.read(length))
            call = event["data"]["tool_call"]
        except (ValueError, KeyError, TypeError) as e:
            return self.reply(400, {"error": "bad_request", "message": str(e)})
        key = self.headers.get("idempotency-key") or event.get("id")
        context = {
            name: self.headers.get(f"x-{name}-id")
            for name in ("user", "project", "workspace", "session")
        }
        hold = False
        with lock:
            if failed[0] < args.fail_first:
                failed[0] += 1
                if log:
                    log.write(json.dumps({"key": key, "call": call.get("id"), "failed": True}) + "\n")
                return self.reply(503, {"error": "unavailable", "message": "failing on purpose"})
            repeat = key in answers
            if not repeat:
                if args.delay_ms:
                    time.sleep(args.delay_ms / 1000)
                tool = TOOLS.get(call.get("name"))
                if tool is None:
                    answer = {"error": f"no tool {call.get('name')}"}
                else:
                    answer = {"result": tool(**call.get("arguments", {}))}
                answers[key] = answer
                hold = len(answers) == args.hold_at
            answer = answers[key]
            if log:
                log.write(
                    json.dumps({"key": key, "call": call.get("id"), "repeat": repeat, **context})
                    + "\n"
                )
        if hold:
            time.sleep(args.hold_ms / 1000)
        self.reply(200, answer)

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_):
        pass


server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
print(f"consumer listening on http://127.0.0.1:{args.port}", flush=True)
server.serve_forever()
