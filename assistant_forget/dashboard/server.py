"""Serving the dashboard: a socket on 127.0.0.1 only, the one-time token URL, uvicorn until Ctrl-C."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from ..core.errors import BadInput
from ..device.device import Device
from .app import create_app
from .security import Secrets

HOST = "127.0.0.1"  # never another interface: the dashboard is for the person at this machine


def bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:`port` (0: a free port); BadInput naming the port when it is taken."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise BadInput(f"--port must be an integer in 0..65535 (0: any free port), got {port!r}")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((HOST, port))
        sock.listen(64)
    except OSError as e:
        sock.close()
        raise BadInput(f"cannot listen on {HOST}:{port} ({e.strerror}); choose another --port, or 0 for any "
                       "free port") from None
    return sock


def serve(root: Path, port: int = 0, out=None) -> int:
    """Serve the dashboard of device `root` until interrupted; prints the URL to open (it works once)."""
    import uvicorn

    out = out or sys.stdout
    dev = Device.open(root)  # a missing or broken device stops here, with the library's message
    sock = bind(port)
    port = sock.getsockname()[1]
    keys = Secrets()
    app, dash = create_app(dev.root, port, keys)
    config = uvicorn.Config(app, log_level="warning", access_log=False, server_header=False, date_header=False,
                            proxy_headers=False, lifespan="off")
    server = uvicorn.Server(config)
    print(f"Privacy dashboard for {dev.root}", file=out)
    print(f"Open http://{HOST}:{port}/?token={keys.token}", file=out)
    print("(the link works once, in one browser; Ctrl-C stops the server)", file=out, flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        if dash.jobs.running() is not None:
            print("waiting for the running job to finish (a forget is never cut off)", file=out, flush=True)
        dash.close()
        sock.close()
    return 0
