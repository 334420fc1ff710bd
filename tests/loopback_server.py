"""A loopback HTTP server of one file for download tests (127.0.0.1 only; stdlib only)."""

from __future__ import annotations

import http.server
import socket
import threading


class LoopbackFileServer:
    """A loopback HTTP server of one file, with Range support and an optional cut-off."""

    def __init__(self, payload: bytes, *, ranges: bool = True, cut_after: int | None = None, status: int = 200,
                 file_name: str = "weights.pth", content_length: bool = True):
        self.payload, self.ranges, self.cut_after, self.status = payload, ranges, cut_after, status
        self.content_length = content_length  # False: no Content-Length, the body ends when the connection closes
        self.requests: list[dict] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                server.requests.append(dict(self.headers))
                if server.status != 200:
                    self.send_error(server.status)
                    return
                start = 0
                range_header = self.headers.get("Range")
                if server.ranges and range_header:
                    start = int(range_header.removeprefix("bytes=").split("-")[0])
                    if start >= len(server.payload):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}")
                else:
                    self.send_response(200)
                body = server.payload[start:]
                if server.content_length:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    self.wfile.write(body[: server.cut_after])
                    server.cut_after = None  # the next request gets everything
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{file_name}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
