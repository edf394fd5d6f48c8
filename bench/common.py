"Helpers the benchmark scripts share (each script imports them from the folder it runs from)."
import resource, time


def timed(fn):
    "`fn()` and the seconds it took."
    t0 = time.perf_counter(); out = fn(); return out, time.perf_counter() - t0


def peak_mib() -> float:
    "Peak resident memory of this process so far, MiB (Linux `ru_maxrss` is in KiB)."
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
