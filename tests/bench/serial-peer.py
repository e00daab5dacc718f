#!/usr/bin/env python3
"""Host end of the virtio-serial ports of the transport benchmark.

  serial-peer.py sink SOCKET BYTES   answer one byte per BYTES received
  serial-peer.py echo SOCKET         send back everything received

Listens on a unix socket that QEMU's chardev connects to.
"""
import os
import socket
import sys


def listen(path):
    if os.path.exists(path):
        os.unlink(path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    conn, _ = srv.accept()
    srv.close()
    return conn


def sink(conn, total):
    """Acknowledge every `total` bytes with one byte, until EOF."""
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    got = 0
    while True:
        n = conn.recv_into(view)
        if n == 0:
            return
        got += n
        while got >= total:
            got -= total
            conn.sendall(b"K")


def echo(conn):
    while True:
        data = conn.recv(65536)
        if not data:
            return
        conn.sendall(data)


def main():
    mode, path = sys.argv[1], sys.argv[2]
    conn = listen(path)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    if mode == "sink":
        sink(conn, int(sys.argv[3]))
    else:
        echo(conn)


if __name__ == "__main__":
    main()
