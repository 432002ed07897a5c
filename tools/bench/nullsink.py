"""A do-nothing InfluxDB /write endpoint: answers 204 and counts the `pack` lines (one per sample), so
the bridge's own ceiling can be measured with the database taken out (the counterpart of the
do-nothing MQTT subscriber).

Only for the benchmark (tools/bench/bridge.py); not a database, not used by any test.

    python -m tools.bench.nullsink --port 18086 &      # POST /write -> 204; GET /count -> pack lines
"""
import argparse
import http.server
import sys
import threading


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"           # keep-alive, as InfluxDB: one connection for all writes
    lines = 0
    lock = threading.Lock()

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        with _Handler.lock:
            # pack lines only: the bridge's own metrics points go the same way and are not samples
            _Handler.lines += body.count(b"\npack,") + body.startswith(b"pack,")
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        data = str(_Handler.lines).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args(argv)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), _Handler)
    print("listening", flush=True)
    srv.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
