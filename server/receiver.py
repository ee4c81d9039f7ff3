"""A local receiver for trying deliveries (`make receiver`): prints each request it gets — method,
path, query, headers, body — and answers `200 ok`. Standard library only; no Django.

    .venv/bin/python -m server.receiver [--host 127.0.0.1] [--port 8001] [--timeout 10]
"""

import argparse
import contextlib
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

MAX_BODY_BYTES = 10 * 1024 * 1024


class EchoHandler(BaseHTTPRequestHandler):
    # Seconds a connection may stay silent before or within a request; the server's --timeout.
    timeout = 10.0

    def _echo(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self.send_error(400, f"Content-Length must be a number of bytes up to {MAX_BODY_BYTES}")
            return
        body = self.rfile.read(length)
        parts = urlsplit(self.path)
        lines = [f"{self.command} {parts.path}", f"query: {parts.query}"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        lines += ["", body.decode("utf-8", errors="replace"), ""]
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _echo

    def log_message(self, format, *args):  # the echo above says it all
        pass


class EchoServer(ThreadingHTTPServer):
    daemon_threads = True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m server.receiver", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001, help="0: any free port")
    parser.add_argument("--timeout", type=float, default=EchoHandler.timeout, help="seconds of silence")
    args = parser.parse_args(argv)
    handler = type("Handler", (EchoHandler,), {"timeout": args.timeout})
    with EchoServer((args.host, args.port), handler) as server:
        host, port = server.server_address[:2]
        print(f"Receiving on http://{host}:{port}/ (Ctrl-C stops)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()


if __name__ == "__main__":
    main()
