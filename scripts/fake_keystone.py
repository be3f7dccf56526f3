#!/usr/bin/env python3
"""Minimal fake Keystone v3, so that the reference freezer-agent 19.0.0 runs offline.

Why: freezer 19.0.0's Job.__init__ (freezer/job.py) always builds the OpenStack clients and
calls get_nova(); openstacksdk 4.x then authenticates at once (POST /v3/auth/tokens), even
for `--storage local`. Without a Keystone that answers, the agent dies with
"Unable to establish connection to <OS_AUTH_URL>/auth/tokens".

This server answers just enough: a token whose service catalog has compute / volumev3 /
block-storage / image / network / object-store endpoints pointing back at this server, and
version documents for them. The agent makes GET /v3, POST /v3/auth/tokens and GET /image
per run; no nova/cinder/glance API calls happen in `--mode fs`. object-store is only a
placeholder: this is not a Swift.

Usage:
  fake_keystone.py [--port N] [--port-file FILE] [--log FILE] [--exit-with-parent]

  --port 0 (the default) binds a free loopback port; the port actually bound is written
  to --port-file (atomically, once the server is listening) and printed on stdout.
  --exit-with-parent makes the server stop when the process that started it goes away,
  so a killed wrapper never leaves it behind.

Then: export OS_AUTH_URL=http://127.0.0.1:PORT/v3 OS_PASSWORD=x
"""
import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def endpoint(base, service_type, name, path):
    return {
        "type": service_type,
        "name": name,
        "id": name + "-id",
        "endpoints": [
            {"id": name + "-" + iface, "interface": iface, "region": "RegionOne",
             "region_id": "RegionOne", "url": base + path}
            for iface in ("public", "internal", "admin")
        ],
    }


def token_body(base):
    catalog = [
        endpoint(base, "identity", "keystone", "/v3"),
        endpoint(base, "compute", "nova", "/compute/v2.1"),
        endpoint(base, "volumev3", "cinderv3", "/volume/v3/fakeproject"),
        endpoint(base, "block-storage", "cinder", "/volume/v3/fakeproject"),
        endpoint(base, "image", "glance", "/image"),
        endpoint(base, "network", "neutron", "/network"),
        endpoint(base, "object-store", "swift", "/swift/v1/AUTH_fakeproject"),
    ]
    domain = {"id": "default", "name": "Default"}
    return {"token": {
        "methods": ["password"],
        "expires_at": "2099-01-01T00:00:00.000000Z",
        "issued_at": "2020-01-01T00:00:00.000000Z",
        "user": {"id": "fakeuser", "name": "x", "domain": domain},
        "project": {"id": "fakeproject", "name": "x", "domain": domain},
        "roles": [{"id": "r", "name": "admin"}],
        "catalog": catalog,
    }}


def version_doc(base, path):
    p = path.split("?", 1)[0].rstrip("/")

    def link(href):
        return [{"rel": "self", "href": base + href}]

    if p.startswith("/compute"):
        return {"version": {"id": "v2.1", "status": "CURRENT", "version": "2.95",
                            "min_version": "2.1", "links": link("/compute/v2.1/")}}
    if p.startswith("/volume"):
        return {"versions": [{"id": "v3.0", "status": "CURRENT", "version": "3.70",
                              "min_version": "3.0", "links": link("/volume/v3/")}]}
    if p.startswith("/image"):
        return {"versions": [{"id": "v2.16", "status": "CURRENT", "links": link("/image/v2/")}]}
    if p.startswith("/network"):
        return {"versions": [{"id": "v2.0", "status": "CURRENT",
                              "links": link("/network/v2.0/")}]}
    if p == "" or p.startswith("/v3"):
        return {"version": {"id": "v3.14", "status": "stable",
                            "updated": "2020-04-07T00:00:00Z", "links": link("/v3/"),
                            "media-types": [{"base": "application/json",
                                             "type": "application/vnd.openstack.identity-v3+json"}]}}
    return None


class Handler(BaseHTTPRequestHandler):
    base = ""  # set once the port is known
    logfile = None

    def log_message(self, fmt, *args):
        if self.logfile:
            with open(self.logfile, "a") as f:
                f.write("%s %s\n" % (self.command, self.path))

    def _send(self, code, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        if self.path.split("?", 1)[0].rstrip("/").endswith("/auth/tokens"):
            self._send(201, token_body(self.base), {"X-Subject-Token": "fake-token"})
        else:
            self._send(404, {"error": "not found"})

    def do_GET(self):
        doc = version_doc(self.base, self.path)
        if doc is not None:
            self._send(200, doc)
        else:
            self._send(404, {"error": "not found"})

    do_HEAD = do_GET


def watch_parent(server):
    # When the starter dies we are re-parented; stop then rather than linger.
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.5)
    server.shutdown()


def main():
    ap = argparse.ArgumentParser(description="Minimal fake Keystone v3 for freezer-agent.")
    ap.add_argument("port_pos", nargs="?", type=int, help=argparse.SUPPRESS)  # old form: PORT
    ap.add_argument("log_pos", nargs="?", help=argparse.SUPPRESS)  # old form: PORT LOGFILE
    ap.add_argument("--port", type=int, default=0, help="0 = pick a free port (default)")
    ap.add_argument("--port-file", help="write the bound port here once listening")
    ap.add_argument("--log", help="append one line per request here")
    ap.add_argument("--exit-with-parent", action="store_true")
    args = ap.parse_args()
    port = args.port_pos if args.port_pos is not None else args.port

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    bound = server.server_address[1]
    Handler.base = "http://127.0.0.1:%d" % bound
    Handler.logfile = args.log or args.log_pos
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % bound)
        os.replace(tmp, args.port_file)
    print(bound, flush=True)
    if args.exit_with_parent:
        threading.Thread(target=watch_parent, args=(server,), daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
