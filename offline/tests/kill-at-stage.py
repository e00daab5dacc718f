#!/usr/bin/env python3
# Kill point driver of the offline kill -9 test: runs one command (an apply)
# in a session of its own and kills the whole session (vmaugment-offline,
# qemu-nbd, qemu-img) DELAY_MS after the apply announces STAGE.
#
#   kill-at-stage.py STAGE DELAY_MS COMMAND...   (STAGE: spaces as dashes)
#
# The apply names its stages in debug messages (G_MESSAGES_DEBUG, on its
# stdout): "IMAGE: deciding", "...: patching the overlay", "...: verifying
# the overlay", "...: committing", "...: applied"; a guest of several disks
# also "DISK: committed" after each disk's commit.  STAGE "start" counts
# from the spawn; STAGE "never" lets the command finish.  Reading the pipe
# as the lines arrive puts the kill inside the stage, where a timer started
# with the process would land anywhere (or after the end).
#
# Returns once every process of the session is reaped, printing "killed"
# or "finished STATUS" (the apply ended before the kill), then "stage NAME
# MS" for each stage seen (milliseconds since the spawn, spaces in NAME as
# dashes).  Exits 1 when the apply ended before STAGE.
import ctypes
import os
import signal
import subprocess
import sys
import time

STAGES = ("deciding", "patching the overlay", "verifying the overlay",
          "committing", "committed", "applied")
PR_SET_CHILD_SUBREAPER = 36


def stage_of(line):
    """The stage a line of the apply's output announces, or None."""
    text = line.decode(errors="replace").rstrip("\n")
    name = text.rsplit(": ", 1)[-1]
    return name if "-DEBUG: " in text and name in STAGES else None


def main():
    stage, delay_ms, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    stage = stage.replace("-", " ")
    # qemu-nbd and qemu-img, orphaned by the kill, come back to us to be
    # reaped: then "all reaped" means "nothing holds the image any more",
    # whatever process 1 does with orphans.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("cannot become a child subreaper")
        return 1
    env = dict(os.environ, G_MESSAGES_DEBUG="vmaugment-offline")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env,
                            start_new_session=True)
    seen = []
    reached = stage == "start"
    while not reached:
        line = proc.stdout.readline()
        if not line:
            break
        name = stage_of(line)
        if name:
            seen.append((name, time.monotonic() - t0))
            reached = name == stage
    if stage != "never" and not reached:
        print(f"the apply ended before stage {stage}")
        return 1
    if stage != "never":
        time.sleep(delay_ms / 1000)
        # Not reaped yet, so the group exists even if its leader just ended.
        os.killpg(proc.pid, signal.SIGKILL)
    for line in proc.stdout:
        name = stage_of(line)
        if name:
            seen.append((name, time.monotonic() - t0))
    status = None
    while True:
        try:
            pid, wstatus = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if pid == proc.pid:
            status = wstatus
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        print("killed")
    else:
        print(f"finished {os.waitstatus_to_exitcode(status)}")
    for name, t in seen:
        print(f"stage {name.replace(' ', '-')} {int(t * 1000)}")
    return 0


sys.exit(main())
