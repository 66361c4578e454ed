"""What a server's process tree costs, read from /proc: CPU seconds, memory, which CPUs are busy.

A server is more than one process (gunicorn's arbiter and workers, the launcher's pre-fork
supervisor), so every figure is summed over its whole tree: the root, its descendants, and any
process left in its session (a worker orphaned by a dying parent keeps the session id).
Linux only; elsewhere the readings are empty and the report says the figures are unavailable.
"""

from __future__ import annotations

import os
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class ProcStat:
    """The fields of /proc/PID/stat the bench needs."""

    __slots__ = ("pid", "ppid", "session", "cpu_ticks", "rss_bytes")

    def __init__(self, pid: int, ppid: int, session: int, cpu_ticks: int, rss_bytes: int) -> None:
        self.pid = pid
        self.ppid = ppid
        self.session = session
        #: utime + stime + cutime + cstime: its own CPU plus that of children it has reaped (a
        #: live child's time is not in its parent's cutime yet, so nothing is counted twice)
        self.cpu_ticks = cpu_ticks
        self.rss_bytes = rss_bytes


def parse_stat(pid: int, text: str) -> ProcStat:
    """Parse one /proc/PID/stat line (the command name may hold spaces and parentheses)."""
    rest = text[text.rindex(")") + 2:].split()
    # rest[0] is field 3 (state): field N is rest[N - 3]
    ticks = int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
    return ProcStat(pid, int(rest[1]), int(rest[3]), ticks, int(rest[21]) * PAGE_SIZE)


def read_stat(pid: int) -> ProcStat | None:
    """/proc/PID/stat of one process, or None when it is gone (or /proc is missing)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            return parse_stat(pid, fh.read())
    except (OSError, ValueError, IndexError):
        return None


def all_stats() -> list[ProcStat]:
    """Every process visible in /proc (one scan: about 1 ms per 100 processes)."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    stats = []
    for name in names:
        if name.isdigit():
            stat = read_stat(int(name))
            if stat is not None:
                stats.append(stat)
    return stats


def tree(root: int, stats: Iterable[ProcStat] | None = None) -> list[ProcStat]:
    """The root, its descendants and the rest of its session (the server starts a new session)."""
    table = list(all_stats() if stats is None else stats)
    children: dict[int, list[ProcStat]] = {}
    for stat in table:
        children.setdefault(stat.ppid, []).append(stat)
    found: dict[int, ProcStat] = {s.pid: s for s in table if s.pid == root or (s.session == root and root > 1)}
    queue = list(found)
    while queue:
        for child in children.get(queue.pop(), ()):
            if child.pid not in found:
                found[child.pid] = child
                queue.append(child.pid)
    return list(found.values())


class TreeReading:
    """One reading of a process tree: CPU seconds so far, resident memory now, the pids."""

    __slots__ = ("cpu_seconds", "rss_bytes", "pids")

    def __init__(self, cpu_seconds: float, rss_bytes: int, pids: list[int]) -> None:
        self.cpu_seconds = cpu_seconds
        self.rss_bytes = rss_bytes
        self.pids = pids


def read_tree(*roots: int) -> TreeReading:
    """CPU seconds (user + system, reaped children included) and summed RSS of the roots' trees."""
    table = all_stats()
    members = list({s.pid: s for root in roots for s in tree(root, table)}.values())
    return TreeReading(
        sum(s.cpu_ticks for s in members) / CLOCK_TICKS,
        sum(s.rss_bytes for s in members),
        sorted(s.pid for s in members),
    )


class MemorySampler:
    """Samples the summed RSS of a process tree every ``interval`` seconds in a thread.

    The peak of the sum is the figure: forked workers share copy-on-write pages, which RSS counts
    once per process, so it over-states what the tree really holds (it never under-states it).
    """

    def __init__(self, *roots: int, interval: float = 0.1) -> None:
        self.roots = roots
        self.interval = interval
        self.peak_bytes = 0
        self.peak_processes = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-memory", daemon=True)

    def _loop(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.interval):
                return

    def sample(self) -> None:
        """Take one reading now."""
        reading = read_tree(*self.roots)
        self.samples += 1
        self.peak_bytes = max(self.peak_bytes, reading.rss_bytes)
        self.peak_processes = max(self.peak_processes, len(reading.pids))

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()  # one last reading, so a run shorter than the interval still has two


# --------------------------------------------------------------------------- CPU busy time


def cpu_times() -> dict[int, tuple[int, int]]:
    """Per CPU: (busy ticks, total ticks) from /proc/stat; {} where /proc/stat is missing."""
    out: dict[int, tuple[int, int]] = {}
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            lines = fh.readlines()
    except OSError:
        return out
    for line in lines:
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *fields = line.split()
        values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
        idle = values[3] + values[4]
        out[int(name[3:])] = (sum(values) - idle, sum(values))
    return out


def busy_fraction(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]],
                  cpus: Iterable[int]) -> float | None:
    """How busy ``cpus`` were between two :func:`cpu_times` readings (0.0-1.0), None if unknown."""
    busy = total = 0
    for cpu in cpus:
        if cpu in before and cpu in after:
            busy += after[cpu][0] - before[cpu][0]
            total += after[cpu][1] - before[cpu][1]
    return busy / total if total > 0 else None


# --------------------------------------------------------------------------- affinity


def pin_threads(pid: int, cpus: Iterable[int]) -> int:
    """Set the CPU affinity of every thread of ``pid``; return how many threads were pinned.

    ``os.sched_setaffinity(pid)`` changes one thread only: the threads a process already runs
    (a progress display's refresher, a server's pool) keep their old mask unless set one by one.
    """
    mask = set(cpus)
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        tids = [pid]
    count = 0
    for tid in tids:
        try:
            os.sched_setaffinity(tid, mask)
            count += 1
        except OSError:
            pass
    return count


def pin_tree(root: int, cpus: Iterable[int]) -> int:
    """Set the CPU affinity of every thread of every process in ``root``'s tree; return how many.

    The server is started under ``taskset`` already (its children inherit the mask); this second
    pass catches a backend that resets its own affinity.
    """
    mask = set(cpus)
    return sum(pin_threads(stat.pid, mask) for stat in tree(root))


def tree_affinity(root: int) -> list[int]:
    """The union of the CPU masks of ``root``'s tree (what the report shows as the server's CPUs)."""
    union: set[int] = set()
    for stat in tree(root):
        try:
            union |= os.sched_getaffinity(stat.pid)
        except OSError:
            pass
    return sorted(union)
