#!/usr/bin/env python3
# Inspects the confined offline worker from the host while it runs
# (test-confinement.sh):
#
#   worker-inspect.py [--kill-parent] [--stdin FILE] VMAUGMENT-OFFLINE ARGS...
#
# Runs vmaugment-offline ARGS with a qemu-nbd that stops itself before it
# serves, so that the worker is caught confined and waiting for its disk;
# prints one TAP line per property of the worker (ids, capabilities,
# no_new_privs, seccomp, namespaces, descriptors, root, limits), then lets
# qemu-nbd go on and expects the command to succeed.  With --kill-parent
# it kills vmaugment-offline instead and expects the worker and qemu-nbd
# to end with it (one TAP line).  With --stdin, the command is a spare
# ("scan --spare") whose worker is caught confined before its image is
# known, and FILE its standard input, written once the worker was
# inspected.  Needs root (to read another uid's /proc entries).
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time

from procfs import children, exe_of, gone, state_of, status_of

TIMEOUT = 120


def check(ok, what, detail=""):
    if not ok:
        print(f"not ok - worker: {what}")
        print(f"FAIL: worker: {what}: {detail}", file=sys.stderr)
        raise SystemExit(1)
    print(f"ok - worker: {what}")


def main():
    kill_parent = sys.argv[1] == "--kill-parent"
    if kill_parent:
        del sys.argv[1]
    stdin_data = None
    if sys.argv[1] == "--stdin":
        with open(sys.argv[2], "rb") as f:
            stdin_data = f.read()
        del sys.argv[1:3]
    offline, args = sys.argv[1], sys.argv[2:]
    real_nbd = os.environ["VMAUGMENT_QEMU_NBD"]
    tmp = tempfile.mkdtemp()
    wrapper = os.path.join(tmp, "qemu-nbd")
    with open(wrapper, "w") as f:
        # Same PID throughout: socket activation names it in LISTEN_PID.
        f.write(f'#!/bin/sh\nkill -STOP $$\nexec "{real_nbd}" "$@"\n')
    os.chmod(wrapper, stat.S_IRWXU)
    env = dict(os.environ, VMAUGMENT_QEMU_NBD=wrapper)
    proc = subprocess.Popen([offline] + args, env=env,
                            stdin=subprocess.PIPE if stdin_data is not None
                            else None,
                            stdout=subprocess.DEVNULL)
    worker = None
    deadline = time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            for pid in children(proc.pid):
                if exe_of(pid).endswith("/vmaugment-offline-worker"):
                    worker = pid
            # Confined and waiting for the stopped server.
            if worker and status_of(worker).get("Seccomp") == "2":
                break
            time.sleep(0.005)
        check(worker is not None and proc.poll() is None, "is running",
              f"vmaugment-offline exited {proc.returncode}")
        if kill_parent:
            helpers = children(proc.pid)
            proc.kill()
            proc.wait()
            deadline = time.monotonic() + 10
            while not gone(helpers) and time.monotonic() < deadline:
                time.sleep(0.01)
            left = [f"{pid} {exe_of(pid)} {state_of(pid)}"
                    for pid in helpers if not gone([pid])]
            check(not left, "and qemu-nbd end when vmaugment-offline "
                  "is killed", f"of {helpers} still running: {left}")
            return
        st = status_of(worker)
        uids = st["Uid"].split() + st["Gid"].split()
        check(all(int(i) != 0 for i in uids), "runs under a non-root id",
              f"Uid {st['Uid']} Gid {st['Gid']}")
        caps = {k: st[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd",
                                   "CapAmb")}
        check(all(int(v, 16) == 0 for v in caps.values()),
              "holds no capability, bounding set empty", str(caps))
        check(st["NoNewPrivs"] == "1" and st["Seccomp"] == "2",
              "NoNewPrivs 1 and Seccomp 2",
              f"NoNewPrivs {st['NoNewPrivs']} Seccomp {st['Seccomp']}")
        own = [ns for ns in ("pid", "mnt", "net", "ipc", "uts", "user")
               if os.readlink(f"/proc/{worker}/ns/{ns}") !=
               os.readlink(f"/proc/self/ns/{ns}")]
        check(own == ["pid", "mnt", "net", "ipc", "uts", "user"],
              "has its own PID, mount, network, IPC, UTS and user "
              "namespaces", f"own: {own}")
        fds = {int(fd): os.readlink(f"/proc/{worker}/fd/{fd}")
               for fd in os.listdir(f"/proc/{worker}/fd")}
        expected = {0: "/dev/null", 1: "/dev/null", 2: "/dev/null"}
        # The bundle, until it has read it; a spare's request to come.
        spare = {6} if stdin_data is not None else set()
        ok = (set(fds) - {5} == {0, 1, 2, 3, 4} | spare and
              all(fds[fd] == expected[fd] for fd in expected) and
              fds[3].startswith("socket:") and fds[4].startswith("socket:") and
              fds.get(5, "/memfd:vmaugment-bundle").startswith(
                  "/memfd:vmaugment-bundle") and
              fds.get(6, "/memfd:vmaugment-scan").startswith(
                  "/memfd:vmaugment-scan"))
        check(ok, "holds only its NBD connection, its report socket and "
              "the bundle" + (" and its request to come" if spare else ""),
              str(fds))
        root = f"/proc/{worker}/root"
        check(os.listdir(root) == ["tmp"] and os.listdir(root + "/tmp") == [],
              "sees an empty root with its scratch /tmp",
              str(os.listdir(root)))
        with open(f"/proc/{worker}/limits") as f:
            limits = {line[:26].strip(): line[26:].split()[0]
                      for line in f.readlines()[1:]}
        check(limits["Max processes"] == "0" and
              limits["Max cpu time"] != "unlimited" and
              limits["Max address space"] != "unlimited" and
              int(limits["Max open files"]) <= 64,
              "runs under rlimits (processes, CPU, memory, files)",
              str(limits))
    finally:
        if stdin_data is not None and proc.poll() is None:
            proc.stdin.write(stdin_data)
            proc.stdin.close()
        # Let the stopped server go on, whatever happened.  A reading job
        # starts it only after its probe, which runs beside the worker's
        # start: it may stop itself after the worker was caught confined.
        deadline = time.monotonic() + TIMEOUT
        while proc.poll() is None and time.monotonic() < deadline:
            stopped = [pid for pid in children(proc.pid)
                       if state_of(pid).startswith("T")]
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
            if stopped:
                break
            time.sleep(0.005)
    rc = proc.wait(timeout=TIMEOUT)
    check(rc == 0, "finished its job once the disk answered", f"exit {rc}")


if __name__ == "__main__":
    main()
