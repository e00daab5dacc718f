#!/usr/bin/env python3
"""vmaugment-helper run the way systemd runs it (docs/service.rst).

systemd-socket-activate stands in for vmaugment-helper.socket: it owns
the listening socket and starts the helper on the first connection with
LISTEN_FDS, as systemd does.  A datagram socket of ours stands in for
NOTIFY_SOCKET.  The helper must serve the passed socket (it never makes
its own), report READY=1 and, on SIGTERM, STOPPING=1; a passed socket
that is not a listening stream socket is refused with the reason.
Prints TAP.

  test-helper-service.py HELPER
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

helper = sys.argv[1]
tmp = tempfile.mkdtemp()
n = 0
failed = False


def result(good, name, *info):
    global n, failed
    n += 1
    print(('ok' if good else 'not ok'), n, '-', name)
    if not good:
        failed = True
        for line in info:
            print('#', str(line).replace('\n', '\n# '))


def notify_socket(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(30)
    return s


def recv_state(s):
    try:
        return s.recv(4096).decode()
    except socket.timeout:
        return None


args = ['--store', tmp + '/store', '--trust-dir', tmp + '/trust',
        '--spare-processes', '0']
os.mkdir(tmp + '/trust')

sock = tmp + '/helper.sock'
notify = notify_socket(tmp + '/notify')
act = subprocess.Popen(['systemd-socket-activate', '-l', sock,
                        '-E', 'NOTIFY_SOCKET=' + tmp + '/notify',
                        helper] + args,
                       stderr=subprocess.PIPE, text=True)
for _ in range(300):
    if os.path.exists(sock):
        break
    time.sleep(0.05)
# The first connection starts the helper.
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c.connect(sock)
ready = recv_state(notify)
result(ready == 'READY=1', 'READY=1 once the passed socket is served',
       'got %r' % ready)
# A second client, accepted by the helper on the socket it was given.
c2 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c2.settimeout(10)
c2.connect(sock)
c2.close()
c.close()
# systemd-socket-activate execs the helper: its pid is the helper's.
with open('/proc/%d/cmdline' % act.pid, 'rb') as f:
    exe = f.read().split(b'\0')[0].decode()
result(os.path.basename(exe) == 'vmaugment-helper',
       'the helper runs on the passed socket', exe)
act.send_signal(signal.SIGTERM)
stopping = recv_state(notify)
try:
    rc = act.wait(30)
except subprocess.TimeoutExpired:
    act.kill()
    rc = act.wait()
err = act.stderr.read()
result(stopping == 'STOPPING=1' and rc == 0,
       'STOPPING=1 on SIGTERM, then exit 0', 'got %r, exit %s' % (stopping, rc),
       err)
result('listening on the service manager\'s socket' in err,
       'says it listens on the service manager\'s socket', err)

# A datagram socket is no place for QEMU to connect: refused, exit 2.
dsock = tmp + '/dgram.sock'
act = subprocess.Popen(['systemd-socket-activate', '--datagram', '-l', dsock,
                        helper] + args,
                       stderr=subprocess.PIPE, text=True)
for _ in range(300):
    if os.path.exists(dsock):
        break
    time.sleep(0.05)
d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
d.sendto(b'x', dsock)
try:
    rc = act.wait(30)
except subprocess.TimeoutExpired:
    act.kill()
    rc = act.wait()
err = act.stderr.read()
result(rc == 2 and 'the socket the service manager passed is not a '
       'listening unix stream socket' in err,
       'a passed datagram socket is refused with the reason',
       'exit %s' % rc, err)

print('1..%d' % n)
# The store makes its audit log append-only where it can.
subprocess.run(['chattr', '-a', tmp + '/store/audit.log'],
               stderr=subprocess.DEVNULL)
subprocess.run(['rm', '-rf', tmp])
sys.exit(1 if failed else 0)
