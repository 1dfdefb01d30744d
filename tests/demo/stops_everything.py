#!/usr/bin/env python3
"""hack/demo stops everything it started however it is stopped.

Runs the demo three times until it says every certificate is Ready, then stops it the way users do:
Ctrl-C while its output goes through `| tee` (SIGINT to the whole process group), SIGTERM to the
demo alone, and the reader of its output going away while it idles. Each time the demo must exit
within a minute and leave no etcd, kube-apiserver, simulator or operator behind (the control plane
runs detached, so only the demo's clean-up can stop it). Exits non-zero with what went wrong.
Run by hack/test after the Rust tests; needs the binaries hack/test has built.
"""
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MARKERS = ("target/control-plane", "127.0.0.1:18080", "127.0.0.1:18081")


def leftovers():
    """Command lines of processes the demo started."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(m in cmd for m in MARKERS) and "stops_everything" not in cmd:
            found.append(cmd[:160])
    return found


def wait_ready(stream, timeout=600):
    """Reads the demo's output until it says every certificate is Ready."""
    lines, start = [], time.time()
    while time.time() - start < timeout:
        line = stream.readline()
        if not line:
            break
        lines.append(line.decode(errors="replace"))
        if b"press Ctrl-C" in line:
            return True, lines
    return False, lines


def run(way):
    if way == "ctrl-c through tee":
        cmd = ["bash", "-c", "hack/demo 2>&1 | tee /dev/null"]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, start_new_session=True)
    else:
        proc = subprocess.Popen(["hack/demo"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
    ready, lines = wait_ready(proc.stdout)
    if not ready:
        os.killpg(proc.pid, signal.SIGKILL)
        return f"{way}: the demo never said it was ready:\n" + "".join(lines[-30:])
    started = time.time()
    if way == "ctrl-c through tee":
        os.killpg(proc.pid, signal.SIGINT)
    elif way == "sigterm":
        proc.send_signal(signal.SIGTERM)
    else:
        proc.stdout.close()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        subprocess.run(["hack/control-plane", "down"], cwd=ROOT, capture_output=True)
        return f"{way}: the demo did not exit within 60 s"
    took = time.time() - started
    time.sleep(2)
    left = leftovers()
    if left:
        subprocess.run(["hack/control-plane", "down"], cwd=ROOT, capture_output=True)
        return f"{way}: left running: {left}"
    print(f"demo: {way}: exit {proc.returncode} after {took:.1f}s, nothing left running", file=sys.stderr)
    return None


def main():
    if leftovers():
        sys.exit(f"demo: something of an earlier demo still runs: {leftovers()}")
    failures = [f for f in map(run, ["ctrl-c through tee", "sigterm", "closed output pipe"]) if f]
    if failures:
        sys.exit("demo: " + "\n".join(failures))


if __name__ == "__main__":
    main()
