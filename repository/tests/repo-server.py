#!/usr/bin/env python3
# A static HTTPS server on 127.0.0.1 for the repository tests, which can
# misbehave on request.  It prints its port on the first line of stdout and,
# with --log FILE, appends each request's path to FILE as it arrives, so
# that a test knows which request a client was waiting on when it gave up.
#
# The first path component picks the behaviour, the rest names a file under
# --root:  /MODE/REPO/FILE
#   ok       serve the file
#   slow     headers, then stall before the body of a package until the
#            client goes away: only the client's time bound ends it
#   pause    headers, a stall of PAUSE seconds, then a package's body
#   trickle  a package one byte every 0.3 s
#   pad      a package with 1 MiB more, without Content-Length
#   padlen   a package with 1 MiB more, with a matching Content-Length
#   endless  the index is an endless stream
#
# Copyright (c) vmaugment contributors
# SPDX-License-Identifier: GPL-2.0-or-later
import argparse
import http.server
import os
import posixpath
import ssl
import sys
import threading
import time

PAD = 1024 * 1024
PAUSE = 0.5


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.0'

    def log_message(self, fmt, *args):
        pass

    def send_body(self, data, length=True):
        self.send_response(200)
        self.send_header('Content-Type', 'application/octet-stream')
        if length:
            self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def stall(self):
        # A client sends nothing after its request: a read returns when it
        # closes the connection.
        try:
            self.connection.settimeout(None)
            self.rfile.read(1)
        except (OSError, ValueError):
            pass

    def do_GET(self):
        if self.server.log is not None:
            with open(self.server.log, 'a') as f:
                f.write(self.path + '\n')
        parts = self.path.split('?', 1)[0].lstrip('/').split('/', 1)
        if len(parts) != 2:
            self.send_error(404)
            return
        mode, rel = parts
        rel = posixpath.normpath(rel)
        if rel.startswith('..') or rel.startswith('/'):
            self.send_error(404)
            return
        is_pkg = rel.endswith('.vmod')
        if mode == 'endless' and rel.endswith('index.json'):
            self.send_response(200)
            self.end_headers()
            chunk = b' ' * 65536
            for _ in range(1024):
                self.wfile.write(chunk)
            return
        path = os.path.join(self.server.root, rel)
        try:
            with open(path, 'rb') as f:
                data = f.read()
        except OSError:
            self.send_error(404)
            return
        if mode == 'slow' and is_pkg:
            self.send_response(200)
            self.send_header('Content-Length', str(len(data)))
            self.end_headers()
            self.wfile.flush()
            self.stall()
        elif mode == 'pause' and is_pkg:
            self.send_response(200)
            self.send_header('Content-Length', str(len(data)))
            self.end_headers()
            self.wfile.flush()
            time.sleep(PAUSE)
            self.wfile.write(data)
        elif mode == 'trickle' and is_pkg:
            self.send_response(200)
            self.send_header('Content-Length', str(len(data)))
            self.end_headers()
            for i in range(len(data)):
                self.wfile.write(data[i:i + 1])
                self.wfile.flush()
                time.sleep(0.3)
        elif mode == 'pad' and is_pkg:
            self.send_body(data + b'\0' * PAD, length=False)
        elif mode == 'padlen' and is_pkg:
            self.send_body(data + b'\0' * PAD)
        else:
            self.send_body(data)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # Clients that give up (time bounds, size caps) are expected.
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--root', required=True)
    ap.add_argument('--cert', required=True)
    ap.add_argument('--key', required=True)
    ap.add_argument('--log')
    args = ap.parse_args()

    # Loopback only, an ephemeral port.
    srv = Server(('127.0.0.1', 0), Handler)
    srv.root = args.root
    srv.log = args.log
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print(srv.server_address[1], flush=True)
    # Never outlive the test: it holds our stdin, which closes when it
    # exits or dies.
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)),
                     daemon=True).start()
    srv.serve_forever()
    return 0


if __name__ == '__main__':
    sys.exit(main())
