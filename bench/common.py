"Helpers the benchmark scripts share (each script imports them from the folder it runs from)."
import resource, time
import torch


def timed(fn):
    "`fn()` and the seconds it took."
    t0 = time.perf_counter(); out = fn(); return out, time.perf_counter() - t0


def peak_mib() -> float:
    "Peak resident memory of this process so far, MiB (Linux `ru_maxrss` is in KiB)."
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def gemm_gflops(device: str, n: int = 2048, reps: int = 5) -> float:
    "GFLOP/s of an n x n x n fp32 matrix product on `device`: the machine's attainable rate, measured in this run."
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    if device == 'cuda': torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps): a @ b
    if device == 'cuda': torch.cuda.synchronize()
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9
