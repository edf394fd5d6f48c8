"""Wall time of one grid run one run at a time (the peer; and with 1 torch thread per run) and on a Dask LocalCluster of
N workers, in the same process, with the torch threads each run used (read back from its result.json) and whether
the scores agree (bit-identical for the same thread count). Prints figures and ratios; asserts nothing.
    python bench/bench_grid.py                         # 4 U-Net runs of 40 steps, sequential vs --workers 2
    python bench/bench_grid.py --runs 8 --iters 100 --workers 4
"""
import argparse, json, os, tempfile, time
from pathlib import Path


def grid(runs: int, iters: int, size: str) -> dict:
    "`runs` U-Net runs on phantoms, one per fold of a `runs`-fold split (deterministic: seeded, no augmentation)."
    return {'name': 'bench', 'configs': {'unet': {'model': 'unet', 'features': 8}}, 'axes': {'fold': list(range(runs))},
            'base': {'data': f'phantom:{max(runs, 2)}', 'size': size, 'folds': max(runs, 2), 'epochs': 1,
                     'iters_per_epoch': iters, 'batch_size': 4, 'augment': 'none', 'modalities': ['T1']}}


def results(out) -> dict:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(Path(out).glob('*/result.json'))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--runs', type=int, default=4, help='runs in the grid')
    ap.add_argument('--iters', type=int, default=40, help='training steps per run')
    ap.add_argument('--size', default='64x64x16', help='phantom grid, XxYxZ')
    ap.add_argument('--workers', type=int, default=2, help='Dask worker processes')
    a = ap.parse_args()
    from brainseg.executors import make_executor, _cores
    from brainseg.experiments import run_grid
    g = grid(a.runs, a.iters, a.size)
    print(f"config: {a.runs} U-Net runs of {a.iters} steps on {a.size} phantoms; {_cores()} cores; "
          f"{a.workers} workers")
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        run_grid(g, Path(d) / 'sequential', log=lambda line: None)
        t_seq = time.perf_counter() - t0
        t0 = time.perf_counter()
        run_grid(g, Path(d) / 'sequential1', executor=make_executor(threads=1), log=lambda line: None)
        t_seq1 = time.perf_counter() - t0
        t0 = time.perf_counter()
        ex = make_executor(workers=a.workers).start(log=print)
        t_start = time.perf_counter() - t0
        try:
            run_grid(g, Path(d) / 'dask', executor=ex, log=lambda line: None)
        finally: ex.close()
        t_dask = time.perf_counter() - t0
        one, one1, many = (results(Path(d) / name) for name in ('sequential', 'sequential1', 'dask'))
    per_run = lambda rs: sum(r['timings_s'].get('train', 0) for r in rs.values()) / max(len(rs), 1)
    threads = lambda rs: sorted({r['placement']['torch_threads'] for r in rs.values()})
    rows = [("one run at a time, torch's threads (peer)", t_seq, one), ('one run at a time, --threads 1', t_seq1, one1),
            (f'--workers {a.workers} (incl. cluster start)', t_dask, many)]
    for name, t, rs in rows:
        print(f"{name:<42s} {t:7.1f} s  {len(rs)} runs done  train {per_run(rs):5.1f} s/run  "
              f"torch threads per run {threads(rs)}")
    print(f"cluster start (workers up): {t_start:.1f} s; load average {load0:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after (other processes share these cores when it is above {_cores()})")
    print(f"speed-up of --workers {a.workers}: {t_seq / t_dask:.2f}x over the peer, {t_seq1 / t_dask:.2f}x over "
          f"--threads 1 ({t_seq / (t_dask - t_start):.2f}x, {t_seq1 / (t_dask - t_start):.2f}x without the start)")
    print(f"threads in use at once: sequential {threads(one)[-1]}, --workers {a.workers}: "
          f"{a.workers} x {threads(many)[-1]} = {a.workers * threads(many)[-1]} on {_cores()} cores")
    for name, rs in (('the peer', one), ('--threads 1', one1)):
        same = sum(rs[r]['scores'] == many[r]['scores'] for r in rs if r in many)
        diff = max((abs(rs[r]['mean_dice'] - many[r]['mean_dice']) for r in rs if r in many), default=float('nan'))
        print(f"scores identical to {name}: {same} of {len(rs)} runs (largest mean-Dice difference {diff:.1e})")


if __name__ == '__main__': main()
