# A stand-in, on stdio, for the Slack MCP server the spec's call-mcp example starts with
# `npx slack-mcp-serverr@latest --transport stdio`: it offers the one tool the example
# calls, conversations_add_message, and answers with what it was asked to post and
# whether it was given the token the example sets in its environment.

import json
import os
import sys

for line in sys.stdin:
    message = json.loads(line)
    method, ident = message.get("method"), message.get("id")
    if method == "initialize":
        result = {
            "protocolVersion": message["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "slack stand-in", "version": "1.0.0"},
        }
    elif method == "tools/list":
        result = {"tools": [{"name": "conversations_add_message", "inputSchema": {"type": "object"}}]}
    elif method == "tools/call":
        args = message["params"].get("arguments", {})
        posted = {
            "channel": args.get("channel_id"),
            "thread": args.get("thread_ts"),
            "text": args.get("payload"),
            "argv": sys.argv[1:],
            "token": os.environ.get("SLACK_MCP_XOXP_TOKEN", ""),
        }
        result = {"content": [{"type": "text", "text": json.dumps(posted)}], "structuredContent": posted}
    elif ident is None:
        continue
    else:
        result = {}
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": ident, "result": result}) + "\n")
    sys.stdout.flush()
