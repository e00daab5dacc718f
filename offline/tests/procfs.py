# What /proc says of the processes the offline tests watch (needs root to
# read other ids' entries).
import os


def status_of(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def children(ppid):
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if status_of(name).get("PPid") == str(ppid):
                out.append(int(name))
        except OSError:
            pass
    return out


def state_of(pid):
    """@pid's state ("T" when stopped), "" once it is gone."""
    try:
        return status_of(pid).get("State", "")
    except OSError:
        return ""


def exe_of(pid):
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def gone(pids):
    """Whether none of @pids runs any more (zombies have ended)."""
    for pid in pids:
        try:
            if not status_of(pid).get("State", "").startswith("Z"):
                return False
        except OSError:
            pass
    return True
