"Helpers the benchmark scripts share (each script imports them from the folder it runs from)."
import resource, time
import torch


def timed(fn):
    "`fn()` and the seconds it took."
    t0 = time.perf_counter(); out = fn(); return out, time.perf_counter() - t0


def peak_mib() -> float:
    "Peak resident memory of this process so far, MiB (Linux `ru_maxrss` is in KiB)."
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def gemm_gflops(device: str, dtype=torch.float32, reps: int = 5) -> tuple:
    """GFLOP/s of a large matrix product on `device` (2048^3 on a CPU, 8192^3 to fill a GPU), the machine's attainable
    rate measured in this run, and the words that name it. On CUDA, float32 products use TF32 when cuDNN's
    convolutions do (PyTorch's default for them)."""
    n = 8192 if device == 'cuda' else 2048
    tf32 = device == 'cuda' and torch.backends.cudnn.allow_tf32
    name = {torch.float32: 'TF32' if tf32 else 'fp32', torch.bfloat16: 'bf16'}[dtype]
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    was = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32
    try:
        a @ b
        if device == 'cuda': torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(reps): a @ b
        if device == 'cuda': torch.cuda.synchronize()
    finally: torch.backends.cuda.matmul.allow_tf32 = was
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9, f"{name} GEMM {n}^3"
