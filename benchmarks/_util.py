"""Timing helpers shared by the benchmark scripts (wall time, best of ``repeat``, time spent in a function)."""
import functools
import time


def best_time(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def accumulate_time(spent: dict, name: str, fn):
    """``fn``, adding its wall time per call to ``spent[name]`` (calls on several threads add up)."""
    @functools.wraps(fn)
    def timed(*a, **kw):
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            spent[name] += time.perf_counter() - t0
    return timed
