"""Run the service under uvicorn until SIGTERM or Ctrl-C, then stop gracefully.

uvicorn stops accepting connections, answers the requests in flight, then shuts the app down,
which lets the model worker finish its queue before the process exits.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading

from ..embed import Embedder
from .app import ServeSettings, create_app
from .explore import Explorer


def serve(embedder: Embedder, host: str = "127.0.0.1", port: int = 8000, settings: ServeSettings | None = None,
          explorer: Explorer | None = None, log_level: str = "warning", http: str = "auto") -> None:
    """Serve `embedder` on host:port (port 0: any free port); prints the address once listening.

    With an `explorer` the exploration page is served at `/`."""
    import uvicorn

    app = create_app(embedder, settings, explorer)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level=log_level, access_log=False, timeout_graceful_shutdown=30, http=http)
    server = uvicorn.Server(config)
    print(f"elmo: serving on http://{host}:{bound}", file=sys.stderr, flush=True)
    # uvicorn re-raises the SIGTERM it handled once it has stopped; by then there is nothing left to
    # do, so that second delivery is ignored and the process exits normally (status 0).
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda number, frame: None)
    server.run(sockets=[sock])
    print("elmo: stopped", file=sys.stderr, flush=True)
