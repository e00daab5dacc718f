#!/usr/bin/env python3
# A server whose parent dies before the server's death signal is set ends
# rather than serving the image to nobody (vo_image_child_setup()).
#
#   orphan-server.py VMAUGMENT-OFFLINE IMAGE
#
# vmaugment-offline inspect runs under strace, which holds each process's
# first prlimit64() for a while: a child of vmaugment-offline sets its
# address-space limit (prlimit64(0, RLIMIT_AS, ...)) before its death
# signal, so the second such child (after qemu-img info's) is qemu-nbd's,
# caught between its fork and PR_SET_PDEATHSIG.  vmaugment-offline is
# killed there; the child must end instead of starting qemu-nbd.  Prints
# one TAP line.
import os
import signal
import subprocess
import sys
import time

from procfs import children, exe_of, gone, status_of

PRLIMIT64 = 302         # x86_64
RLIMIT_AS = 9
DELAY_US = 2_000_000


def fail(what):
    print(f"not ok - {what}")
    print(f"FAIL: {what}", file=sys.stderr)
    raise SystemExit(1)


def setting_address_space(pid):
    """Whether @pid, a child in our namespaces, sits in prlimit64(RLIMIT_AS)."""
    try:
        if len(status_of(pid)["NSpid"].split()) != 1:
            return False        # the worker, in its own PID namespace
        with open(f"/proc/{pid}/syscall") as f:
            words = f.read().split()
    except (OSError, KeyError):
        return False
    return (len(words) > 2 and words[0] == str(PRLIMIT64) and
            int(words[1], 16) == 0 and int(words[2], 16) == RLIMIT_AS)


def main():
    offline, image = sys.argv[1:3]
    program = os.path.realpath(offline)
    tracer = subprocess.Popen(
        ["strace", "-f", "-qq", "-o", os.devnull, "-e", "trace=prlimit64",
         "-e", f"inject=prlimit64:delay_enter={DELAY_US}:when=1",
         offline, "inspect", image],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent = None
    seen = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and tracer.poll() is None:
            if parent is None:
                # By its program: strace's first children are its own
                # short-lived probes of what ptrace() can do here.
                kids = [k for k in children(tracer.pid)
                        if exe_of(k) == program]
                parent = kids[0] if kids else None
            else:
                for pid in children(parent):
                    if pid not in seen and setting_address_space(pid):
                        seen.append(pid)
                if len(seen) == 2:
                    break
            time.sleep(0.005)
        if len(seen) != 2:
            fail(f"qemu-nbd's child never set its limits (saw {seen})")
        server = seen[1]
        os.kill(parent, signal.SIGKILL)
        # Its held call returns, and it reaches its death signal.
        end = time.monotonic() + DELAY_US / 1e6 + 10
        while not gone([server]) and time.monotonic() < end:
            time.sleep(0.05)
        if not gone([server]):
            exe = os.readlink(f"/proc/{server}/exe")
            os.kill(server, signal.SIGKILL)
            fail("a server whose parent died before its death signal was "
                 f"set runs on ({server}, {exe})")
        print("ok - a server whose parent died before its death signal was "
              "set ends")
    finally:
        tracer.kill()
        tracer.wait()


if __name__ == "__main__":
    main()
