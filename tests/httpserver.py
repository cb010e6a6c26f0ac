"""A real HTTP file server on 127.0.0.1 for download tests, with scripted misbehaviour.

Supports ``Range: bytes=N-`` requests (206 answers), and per path: a number of requests
to answer with 503, a number of requests whose body is cut off half way, and a record of
every request's path and Range header.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Behaviour:
    fail_503: int = 0
    truncate: int = 0
    truncate_at: float = 0.5


class QuietServer(ThreadingHTTPServer):
    """Drops a client's hang-up silently: socketserver would print its traceback to this
    process's stderr, into the output of the command under test."""

    def handle_error(self, request, client_address) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@dataclass
class ModelServer:
    files: dict[str, bytes] = field(default_factory=dict)
    behaviour: dict[str, Behaviour] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)

    def __enter__(self) -> ModelServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                body = server.files.get(self.path)
                how = server.behaviour.setdefault(self.path, Behaviour())
                if body is None:
                    return self._reply(404, b"not found")
                if how.fail_503 > 0:
                    how.fail_503 -= 1
                    return self._reply(503, b"busy")
                start = 0
                rng = self.headers.get("Range")
                status = 200
                if rng and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                part = body[start:]
                self.send_response(status)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(part)))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                if how.truncate > 0:
                    how.truncate -= 1
                    self.wfile.write(part[: int(len(part) * how.truncate_at)])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(part)

            def _reply(self, code, text):
                self.send_response(code)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

        self._httpd = QuietServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def url(self, path: str) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{path}"
