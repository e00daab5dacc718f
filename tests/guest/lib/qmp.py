#!/usr/bin/env python3
# A minimal QMP client for the guest tests and the benchmarks.
#
#   qmp.py log SOCKET OUT
#       Connect to QEMU's QMP server socket (waiting for it up to 30 s),
#       negotiate, and append every event to OUT as one JSON line until
#       QEMU closes the connection.  Used with "server=on,wait=on", so that
#       QEMU runs nothing before the logger is connected and no event of
#       the VM's start is missed.
#   qmp.py start SOCKET EVENT [TIMEOUT]
#       For a QEMU started with -S: negotiate, "cont", wait for EVENT (at
#       most TIMEOUT seconds, default 60), print it as one JSON line with
#       "wall-us" (host microseconds from sending "cont" to the event)
#       added, then "quit".  Exit status 1 without the event.
#
# Copyright (c) vmaugment contributors
# SPDX-License-Identifier: GPL-2.0-or-later
import json
import socket
import sys
import time


class Qmp:
    def __init__(self, path, wait_s=30.0):
        deadline = time.monotonic() + wait_s
        while True:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self.rfile = self.sock.makefile('rb')
        self.events = []
        greeting = self.read()
        if greeting is None or 'QMP' not in greeting:
            raise RuntimeError('no QMP greeting')
        self.command('qmp_capabilities')

    def read(self):
        line = self.rfile.readline()
        if not line:
            return None
        return json.loads(line)

    def send(self, name, **args):
        msg = {'execute': name}
        if args:
            msg['arguments'] = args
        self.sock.sendall(json.dumps(msg).encode() + b'\n')

    def command(self, name, **args):
        """Run a command; events that arrive meanwhile are kept."""
        self.send(name, **args)
        while True:
            msg = self.read()
            if msg is None:
                raise RuntimeError('QEMU closed QMP during ' + name)
            if 'event' in msg:
                self.events.append(msg)
                continue
            if 'error' in msg:
                raise RuntimeError('%s: %s' % (name, msg['error']))
            return msg.get('return')

    def next_event(self):
        if self.events:
            return self.events.pop(0)
        while True:
            msg = self.read()
            if msg is None or 'event' in msg:
                return msg


def cmd_log(path, out):
    q = Qmp(path)
    with open(out, 'a') as f:
        while True:
            ev = q.next_event()
            if ev is None:
                return 0
            f.write(json.dumps(ev) + '\n')
            f.flush()


def cmd_start(path, event, timeout_s):
    q = Qmp(path)
    q.sock.settimeout(timeout_s)
    t0 = time.monotonic()
    q.command('cont')
    try:
        while True:
            ev = q.next_event()
            if ev is None:
                print('qmp.py: QEMU exited before %s' % event,
                      file=sys.stderr)
                return 1
            if ev['event'] == event:
                break
    except socket.timeout:
        print('qmp.py: no %s within %s s' % (event, timeout_s),
              file=sys.stderr)
        return 1
    ev['wall-us'] = int((time.monotonic() - t0) * 1e6)
    print(json.dumps(ev), flush=True)
    # QEMU drops the commands still queued when the client goes away:
    # wait for the answer to "quit" (or the end), not just any message.
    try:
        q.send('quit')
        while True:
            msg = q.read()
            if msg is None or 'return' in msg or 'error' in msg:
                break
    except (OSError, ValueError):
        pass
    return 0


def main(argv):
    if len(argv) == 4 and argv[1] == 'log':
        return cmd_log(argv[2], argv[3])
    if len(argv) in (4, 5) and argv[1] == 'start':
        timeout_s = float(argv[4]) if len(argv) == 5 else 60.0
        return cmd_start(argv[2], argv[3], timeout_s)
    print('usage: qmp.py log SOCKET OUT | start SOCKET EVENT [TIMEOUT]',
          file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv))
