#!/usr/bin/env python3
"""Benchmark helper (not a test): run one or more commands in sequence, each traced with ptrace,
and report where the time and memory went, for a tool and for the processes it starts.

    proctrace.py OUT.json [--chroot DIR] [--proc DIR] [--concurrent PREFIX] -- ARGV... [-- ARGV...]

Each ARGV is a "tool process" (for cloud-init: one per boot stage). ptrace follows every fork,
vfork and thread (PTRACE_O_TRACEFORK/VFORK/CLONE) and stops each task once more, at its exit
(PTRACE_O_TRACEEXIT), where its counters are read before the kernel frees them:

- CPU: /proc/TID/schedstat (on-CPU nanoseconds, user+sys) of each task at its exit; a tool's own
  CPU is the sum over its own threads, the children's CPU the sum over every other task (the
  RUSAGE_SELF / RUSAGE_CHILDREN split, in ns instead of clock ticks).
- wall: from just before the fork of the first command to the reaping of the last; the
  children's wall is the union of the lifetimes (fork event to exit) of the tools' direct child
  processes, so the tool's own wall is the wall minus that (the time it was not waiting for a
  child it started; both tools run their children one at a time).
- memory: VmHWM (peak RSS) of each process at its exit: the tool's own, and the largest child's.

ptrace stops a task only at these events (not at system calls), so its cost is a few stops per
process. Written for bench/agent-overhead.sh.
"""
import ctypes
import json
import os
import signal
import sys
import time

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long
TRACEME, CONT, SETOPTIONS, GETEVENTMSG = 0, 7, 0x4200, 0x4201
O_TRACEFORK, O_TRACEVFORK, O_TRACECLONE, O_TRACEEXEC, O_TRACEEXIT, O_EXITKILL = 0x2, 0x4, 0x8, 0x10, 0x40, 0x100000
EV_FORK, EV_VFORK, EV_CLONE, EV_EXEC, EV_EXIT = 1, 2, 3, 4, 6
WALL = 0x40000000
# the procfs of the traced tasks' pid namespace (--proc: in a new pid namespace, the one mounted there)
PROC = "/proc"
# --concurrent PREFIX: direct children whose command line starts with PREFIX run beside the tool
# (cloud-init's `tee` of its output), so their lifetime is not time the tool waited for them
CONCURRENT = []


def ptrace(req, pid, addr=0, data=0):
    return libc.ptrace(req, pid, ctypes.c_void_p(addr), ctypes.c_void_p(data))


def event_msg(pid):
    msg = ctypes.c_ulong()
    libc.ptrace(GETEVENTMSG, pid, None, ctypes.byref(msg))
    return msg.value


def cpu_ns(tid):
    try:
        with open(f"{PROC}/{tid}/schedstat") as f:
            return int(f.read().split()[0])
    except OSError:
        return 0


def hwm_kb(pid):
    try:
        with open(f"{PROC}/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(argv, chroot):
    """Trace one command; returns its figures."""
    t0 = time.perf_counter()
    root = os.fork()
    if root == 0:
        try:
            ptrace(TRACEME, 0)
            if chroot:
                os.chroot(chroot)
                os.chdir("/")
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    # task -> {"owner": process id, "parent": owning process of the forker, "start": t}
    tasks = {root: {"owner": root, "parent": None, "start": t0, "thread": False}}
    early = set()  # tasks whose first stop came before their parent's fork event
    started = False
    tool_cpu = child_cpu = 0
    tool_hwm = child_hwm = 0
    child_intervals = []
    child_cmds = []  # (seconds, command line) of each direct child
    status_code = None
    while tasks:
        pid, st = os.waitpid(-1, WALL)
        now = time.perf_counter()
        if os.WIFEXITED(st) or os.WIFSIGNALED(st):
            t = tasks.pop(pid, None)
            if t and not t["thread"] and t["parent"] == root:
                if not any(t.get("cmd", "").startswith(c) for c in CONCURRENT):
                    child_intervals.append((t["start"], now))
                child_cmds.append((round(now - t["start"], 4), t.get("cmd", "(no exec)")))
            if pid == root:
                status_code = os.waitstatus_to_exitcode(st)
            continue
        if not os.WIFSTOPPED(st):
            continue
        sig, ev = os.WSTOPSIG(st), st >> 16
        if pid == root and not started:
            started = True  # the SIGTRAP after execve
            ptrace(SETOPTIONS, pid, 0, O_TRACEFORK | O_TRACEVFORK | O_TRACECLONE | O_TRACEEXEC | O_TRACEEXIT | O_EXITKILL)
            ptrace(CONT, pid)
            continue
        if sig == signal.SIGTRAP and ev:
            if ev in (EV_FORK, EV_VFORK, EV_CLONE):
                new = event_msg(pid)
                owner = tasks[pid]["owner"] if pid in tasks else pid
                thread = ev == EV_CLONE
                tasks[new] = {"owner": owner if thread else new, "parent": owner, "start": now, "thread": thread}
                if new in early:
                    early.discard(new)
                    tasks[new]["fresh"] = False
                    ptrace(CONT, new)
            elif ev == EV_EXEC and pid in tasks:
                try:
                    with open(f"{PROC}/{pid}/cmdline", "rb") as f:
                        tasks[pid]["cmd"] = f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:200]
                except OSError:
                    pass
            elif ev == EV_EXIT:
                t = tasks.get(pid, {"owner": pid})
                ns = cpu_ns(pid)
                if t["owner"] == root:
                    tool_cpu += ns
                else:
                    child_cpu += ns
                if not t.get("thread"):
                    h = hwm_kb(pid)
                    if pid == root:
                        tool_hwm = max(tool_hwm, h)
                    else:
                        child_hwm = max(child_hwm, h)
            ptrace(CONT, pid)
            continue
        if sig == signal.SIGSTOP and pid not in tasks:
            early.add(pid)  # a new task's first stop; resumed at its parent's fork event
            continue
        if sig == signal.SIGSTOP and pid in tasks and tasks[pid].get("fresh", True):
            tasks[pid]["fresh"] = False
            if pid != root:
                ptrace(CONT, pid)
                continue
        ptrace(CONT, pid, 0, sig)  # any other signal goes to the task
    wall = time.perf_counter() - t0
    child_intervals.sort()
    child_wall, end = 0.0, None
    for s, e in child_intervals:  # union of the intervals
        if end is None or s > end:
            child_wall += e - s
            end = e
        elif e > end:
            child_wall += e - end
            end = e
    return {
        "argv": argv,
        "exit": status_code,
        "wall_s": wall,
        "children_wall_s": child_wall,
        "children": len(child_cmds),
        "child_cmds": child_cmds,
        "tool_cpu_s": tool_cpu / 1e9,
        "children_cpu_s": child_cpu / 1e9,
        "tool_hwm_kb": tool_hwm,
        "children_hwm_kb": child_hwm,
    }


def main():
    args = sys.argv[1:]
    out = args.pop(0)
    global PROC
    chroot = None
    while args[0] in ("--chroot", "--proc", "--concurrent"):
        if args[0] == "--chroot":
            chroot = args[1]
        elif args[0] == "--concurrent":
            CONCURRENT.append(args[1])
        else:
            PROC = args[1]
        args = args[2:]
    cmds, cur = [], None
    for a in args:
        if a == "--" and (cur is None or cur):
            cur = []
            cmds.append(cur)
        else:
            cur.append(a)
    results = []
    for argv in cmds:
        r = run(argv, chroot)
        results.append(r)
        if r["exit"] != 0:
            break
    total = {
        "wall_s": sum(r["wall_s"] for r in results),
        "children_wall_s": sum(r["children_wall_s"] for r in results),
        "children": sum(r["children"] for r in results),
        "tool_cpu_s": sum(r["tool_cpu_s"] for r in results),
        "children_cpu_s": sum(r["children_cpu_s"] for r in results),
        "tool_hwm_kb": max(r["tool_hwm_kb"] for r in results),
        "children_hwm_kb": max(r["children_hwm_kb"] for r in results),
        "commands": results,
    }
    with open(out, "w") as f:
        json.dump(total, f)
    bad = [r for r in results if r["exit"] != 0]
    if bad or len(results) != len(cmds):
        print(f"proctrace: {bad[0]['argv']} exited {bad[0]['exit']}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
