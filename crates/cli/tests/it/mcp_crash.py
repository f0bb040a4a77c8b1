# An MCP server on stdio that initializes and lists its one tool like any other, and
# exits in the middle of a `tools/call`, after saying why on stderr: for skein's test
# of a server that crashes mid-call.

import json
import sys

for line in sys.stdin:
    message = json.loads(line)
    method, ident = message.get("method"), message.get("id")
    if method == "initialize":
        result = {
            "protocolVersion": message["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "crashing", "version": "1.0.0"},
        }
    elif method == "tools/list":
        result = {"tools": [{"name": "explode", "inputSchema": {"type": "object"}}]}
    elif method == "tools/call":
        sys.stderr.write("boom: the explode tool took the server down\n")
        sys.stderr.flush()
        sys.exit(3)
    elif ident is None:
        continue
    else:
        result = {}
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": ident, "result": result}) + "\n")
    sys.stdout.flush()
