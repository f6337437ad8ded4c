#!/usr/bin/env python3
"""Writes build/idle-layout.ld: the functions an idle `fpmctl supervise` runs, placed
together by the linker (see build/layout.rs for why).

usage: scripts/idle-layout.py [--rounds N] [--out FILE]

Needs root (FPM's workers run as nobody), perf, php-fpm and cargo. It builds the release
binary into target/idle-layout/, runs `fpmctl supervise` on a sandboxed FPM (a unix socket
and a loopback TCP pool), and profiles it in two ways:

1. CPU samples of the idle loop with a 10 ms health interval: the functions that run most.
2. Rounds of page faults: with the layout so far linked in, the supervisor settles and
   releases its binary's pages; every page fault in the binary's code outside the laid-out
   section over its next three health checks names a function that is missing. The kernel faults a
   64 KiB window in at a time, so one round finds one function per window; rounds go on
   until no fault lands outside (or --rounds).

Each function becomes a pattern of the linker script: its mangled name with the hash made a
wildcard, so the layout holds for every build of the same code (a bench build's hashes differ
from a release build's, and a new toolchain changes them all). The wildcard also takes in the
other instantiations of a generic function (a few KiB more in the section); only where it would
take in more than 64 KiB is the exact name kept.
"""

import argparse
import bisect
import fnmatch
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(REPO, "target", "idle-layout")
BINARY = os.path.join(TARGET, "release", "fpmctl")


def die(msg):
    sys.exit(f"idle-layout: {msg}")


def build(layout):
    """Builds the release binary linked with `layout` (a path, or "0" for none)."""
    env = dict(os.environ, FPMCTL_IDLE_LAYOUT=layout)
    subprocess.run(
        ["cargo", "build", "--release", "--quiet", "--target-dir", TARGET],
        cwd=REPO,
        env=env,
        check=True,
    )
    return BINARY


def symbols(binary):
    """[(address, size, mangled name)] of the binary's functions, by address."""
    out = subprocess.run(
        ["nm", "-n", "-S", "--defined-only", binary], capture_output=True, text=True, check=True
    ).stdout
    syms = []
    for line in out.splitlines():
        f = line.split()
        if len(f) == 4 and f[2] in "tT":
            syms.append((int(f[0], 16), int(f[1], 16), f[3]))
    return syms


def section(binary, name):
    """(address, size) of an ELF section, or None."""
    out = subprocess.run(["readelf", "-SW", binary], capture_output=True, text=True).stdout
    for line in out.splitlines():
        m = re.search(r"\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", line)
        if m and m.group(1) == name:
            return int(m.group(2), 16), int(m.group(3), 16)
    return None


class Lookup:
    def __init__(self, syms):
        self.syms = syms
        self.starts = [s[0] for s in syms]

    def name(self, addr):
        i = bisect.bisect_right(self.starts, addr) - 1
        if i >= 0:
            start, size, name = self.syms[i]
            if start <= addr < start + max(size, 1):
                return name
        return None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Supervisor:
    """`fpmctl supervise` on a sandboxed FPM, stopped (by PID) on exit."""

    def __init__(self, binary, interval):
        self.dir = tempfile.mkdtemp(prefix="fpmctl-layout.")
        os.chmod(self.dir, 0o755)
        conf = self.conf = os.path.join(self.dir, "fpm.conf")
        with open(conf, "w") as f:
            f.write(
                f"[global]\npid = {self.dir}/fpm.pid\nerror_log = {self.dir}/error.log\n"
                f"[sock]\nuser = nobody\ngroup = nogroup\nlisten = {self.dir}/fpm.sock\n"
                "pm = static\npm.max_children = 2\nping.path = /ping\n"
                f"[tcp]\nuser = nobody\ngroup = nogroup\nlisten = 127.0.0.1:{free_port()}\n"
                "pm = static\npm.max_children = 2\nping.path = /ping\n"
            )
        env = dict(os.environ, FPMCTL_LOCK_DIR=os.path.join(self.dir, "lock"))
        self.log = open(os.path.join(self.dir, "supervise.log"), "w")
        self.proc = subprocess.Popen(
            [binary, "supervise", "--config", conf, "--health-interval", interval],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.binary = os.path.realpath(binary)

    def wait_ready(self):
        """Waits for FPM's READY (the supervisor settles and releases its pages right after)."""
        for _ in range(200):
            with open(self.log.name) as f:
                if "FPM ready" in f.read():
                    time.sleep(0.5)
                    return
            time.sleep(0.1)
        die(f"FPM did not become ready; see {self.log.name}")

    def base(self):
        """Where the binary's first page is mapped."""
        with open(f"/proc/{self.proc.pid}/maps") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 6 and fields[5] == self.binary and int(fields[2], 16) == 0:
                    return int(fields[0].split("-")[0], 16)
        die(f"pid {self.proc.pid} does not map {self.binary}")

    def record(self, seconds, args, fields):
        """perf record ARGS on the supervisor for `seconds`; the samples' FIELDS
        (addresses)."""
        if self.proc.poll() is not None:
            die(f"the supervisor exited; see {self.log.name}")
        data = os.path.join(self.dir, "perf.data")
        subprocess.run(
            ["perf", "record", "-q", "-o", data, *args, "-p", str(self.proc.pid),
             "--", "sleep", str(seconds)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        out = subprocess.run(
            ["perf", "script", "-i", data, "-F", fields],
            capture_output=True,
            text=True,
        ).stdout
        addrs = []
        for line in out.splitlines():
            addrs += [int(x, 16) for x in line.split()]
        return addrs

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # A supervisor that died (or was killed above) leaves its FPM running: fpmctl stops
        # the master it finds for this sandbox's config, and its workers, before the directory
        # goes.
        subprocess.run(
            [self.binary, "-q", "-c", self.conf, "stop"],
            env=dict(os.environ, FPMCTL_LOCK_DIR=os.path.join(self.dir, "lock")),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def hashless(name):
    """The pattern of a mangled name that leaves out its hashes (and the numbered suffix the
    compiler gives a local copy, `.863` or `.llvm.1234`, which differs from build to build)."""
    name = re.sub(r"(\.llvm)?\.[0-9]+$", "*", name)
    if name.startswith("_ZN"):
        return re.sub(r"17h[0-9a-f]{16}E(\*?)$", "17h*", name)
    if name.startswith("_R"):
        return re.sub(r"Cs[0-9A-Za-z]+_", "Cs*_", name)
    return name


# How much code one hashless pattern may take in beyond its function before the exact name is
# used instead. A hash is tied to the toolchain, the lock file and the profile (a bench
# build's names differ from a release build's), so exact names are kept for the rare pattern
# that would take in a large share of the binary.
OVERMATCH_LIMIT = 64 * 1024


def patterns(names, syms):
    """One pattern per function: hashless unless that takes in more than OVERMATCH_LIMIT of
    other code."""
    size = {}
    for _, s, n in syms:
        size[n] = size.get(n, 0) + s
    out, seen = [], set()
    for n in names:
        if n in seen or n not in size:
            continue
        seen.add(n)
        p = hashless(n)
        if p != n:
            rx = re.compile(fnmatch.translate(p))
            taken = sum(s for m, s in size.items() if rx.match(m))
            if taken - size[n] > OVERMATCH_LIMIT:
                p = n
        out.append(p)
    return out


def write(path, pats):
    with open(path, "w") as f:
        f.write(
            "/* The code an idle `fpmctl supervise` runs, in one place (build/layout.rs).\n"
            "   Written by scripts/idle-layout.py; regenerate it rather than edit it. */\n"
            "SECTIONS\n{\n  .text.idle :\n  {\n"
        )
        for p in pats:
            f.write(f"    *(.text.{p} .text.unlikely.{p})\n")
        f.write("  }\n}\nINSERT BEFORE .text;\n")


def main():
    # SIGTERM ends the run like Ctrl-C: the sandboxed supervisor is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("idle-layout: terminated"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--out", default=os.path.join(REPO, "build", "idle-layout.ld"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        die("run as root: FPM's workers run as nobody")
    for tool in ("perf", "nm", "readelf", "cargo"):
        if shutil.which(tool) is None:
            die(f"{tool} is not installed")

    binary = build("0")
    syms = symbols(binary)
    look = Lookup(syms)
    counts = {}
    with Supervisor(binary, "10ms") as sup:
        sup.wait_ready()
        base = sup.base()
        for a in sup.record(15, ["-e", "cpu-clock", "-F", "20000"], "ip"):
            n = look.name(a - base)
            if n:
                counts[n] = counts.get(n, 0) + 1
    names = sorted(counts, key=lambda n: -counts[n])
    print(f"idle-layout: {len(names)} functions from CPU samples", file=sys.stderr)

    trial = os.path.join(TARGET, "trial.ld")
    os.makedirs(TARGET, exist_ok=True)
    for round_no in range(1, args.rounds + 1):
        write(trial, patterns(names, syms))
        binary = build(trial)
        idle = section(binary, ".text.idle")
        if idle is None:
            die("the linked binary has no .text.idle section")
        look = Lookup(symbols(binary))
        missing = []
        # The first health checks after the release fault in what they run: from READY
        # over three checks.
        with Supervisor(binary, "4s") as sup:
            sup.wait_ready()
            base = sup.base()
            for a in sup.record(13, ["-e", "page-faults", "-c", "1", "-d"], "ip,addr"):
                off = a - base
                if idle[0] <= off < idle[0] + idle[1]:
                    continue
                n = look.name(off)
                if n and n not in names and n not in missing:
                    missing.append(n)
        print(
            f"idle-layout: round {round_no}: .text.idle {idle[1] // 1024} KiB, "
            f"{len(missing)} functions faulted outside it",
            file=sys.stderr,
        )
        if not missing:
            break
        names += missing
    write(args.out, patterns(names, syms))
    print(f"idle-layout: wrote {args.out} ({len(names)} functions)", file=sys.stderr)


if __name__ == "__main__":
    main()
