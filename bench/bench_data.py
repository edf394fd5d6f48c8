"""The data pipeline: loading and preprocessing per subject, samples/s of each dataset kind, and the share of a
training step spent waiting for its batch. Prints tables; asserts nothing.

The figures are read against one goal: the data pipeline must never be what a training step waits for. Subjects are
template subjects (ICBM152 + CerebrA) of `--size` x `--size` x 48 voxels. Loading: generated into an empty cache, read
back from it (uncompressed int16 NIfTI), and read as an MRBrainS18 release (gzip float32 NIfTI). Samples/s: one
process, `__getitem__` of slices (U-Net), 19-slice slabs (base network) and 16 x 64 x 64 patches (V-Net), with no
augmentation, `Augment` and `Randomize`, median of `--repeats` timings of `--n` samples. Waiting: the trainer's own
`train_epoch`, DataLoader built as `fit` builds it (class-aware `epoch_order`, `batch_sampler`, `pad_collate`,
`num_workers`), with the time spent in `next(loader)` taken apart from forward, backward and optimizer step; the
first step (worker start-up) is reported apart and left out of the medians and of the wait share.
    python bench/bench_data.py                          # 240 x 240 x 48, 4 subjects: 10-15 min on 2 cores
    python bench/bench_data.py --size 96 --subjects 2 --n 8 --repeats 3 --steps 4      # quick: about two minutes
On a machine shared with other work, OpenMP threads that spin while waiting for each other make multi-thread steps
many times slower; `OMP_WAIT_POLICY=PASSIVE python bench/...` keeps such figures readable (the header shows the load).
"""
import argparse, os, statistics, tempfile, time
from pathlib import Path
import numpy as np
import torch
from common import timed

KINDS = {'slice': 'unet', 'slab': 'base', 'patch': 'vnet'}  # dataset kind -> the network that takes it
AUGMENTS = ('none', 'augment', 'randomize')
WAIT_RUNS = {'unet': 8, 'base': 2}  # network -> batch of the waiting runs (override with --batch)
WAIT_LIMIT = 0.05  # share of a step spent in `next(loader)` above which the step waits for data


def median_time(fn, repeats: int) -> float:
    "Median seconds of `repeats` calls of `fn`."
    return statistics.median(timed(fn)[1] for _ in range(repeats))


def config(model: str, augment: str, **kw):
    "The `TrainConfig` of a network and an augmentation: 'none', 'augment' or 'randomize' (percentile inputs)."
    from brainseg.train import TrainConfig
    return TrainConfig(model=model, augment=augment == 'augment', randomize=augment == 'randomize',
                       normalize='percentile' if augment == 'randomize' else 'zscore', **{'device': 'cpu', **kw})


def loading(a, tmp: Path) -> tuple:
    "Subjects, and rows (what, seconds per subject, MB per subject on disk) of generating and loading them."
    from brainseg.template import template_subjects
    from brainseg.io import write_mrbrains_subject
    from brainseg.data import load_dataset
    shape, n = (a.size, a.size, 48), a.subjects
    subjects, cold = timed(lambda: template_subjects(n, a.seed, shape=shape, cache_dir=tmp / 'cache'))
    cached = median_time(lambda: template_subjects(n, a.seed, shape=shape, cache_dir=tmp / 'cache'), a.repeats)
    _, write = timed(lambda: [write_mrbrains_subject(s, tmp / 'release') for s in subjects])
    release = median_time(lambda: load_dataset(tmp / 'release'), a.repeats)
    mb = lambda folder, pattern: sum(f.stat().st_size for f in (tmp / folder).rglob(pattern)) / 2**20 / n
    return subjects, [('generate + write to an empty cache (once)', cold / n, mb('cache', '*.nii')),
                      ('read from the cache (int16 .nii)', cached / n, mb('cache', '*.nii')),
                      ('write an MRBrainS18 release (float32 .nii.gz)', write / n, mb('release', '*.nii.gz')),
                      ('read the release (load_dataset)', release / n, mb('release', '*.nii.gz'))]


def preprocessing(a, subjects: list) -> tuple:
    "Preprocessed subjects by normalization, and rows (what, seconds per subject) of preprocessing and datasets."
    from brainseg.data import preprocess
    from brainseg.train import make_dataset
    from brainseg.models import make_model, model_geometry
    n, rows, items = len(subjects), [], {}
    for norm in ('zscore', 'percentile'):
        items[norm] = [preprocess(s, normalize=norm) for s in subjects]
        rows.append((f"preprocess ({norm}: normalize, crop, pad)",
                     median_time(lambda: [preprocess(s, normalize=norm) for s in subjects], a.repeats) / n))
    geometry = {kind: model_geometry(make_model(name)) for kind, name in KINDS.items()}
    for kind, name in KINDS.items():
        rows.append((f"{kind} dataset construction (targets, presence)",
                     median_time(lambda: make_dataset(config(name, 'augment'), items['zscore'],
                                                      geometry=geometry[kind]), a.repeats) / n))
    return items, geometry, rows


def sample_rates(a, items: dict, geometry: dict) -> dict:
    "{(kind, augmentation): (samples/s or None, sample shape, error)}: `__getitem__` of random samples, median."
    from brainseg.train import make_dataset
    out = {}
    for kind, name in KINDS.items():
        for aug in AUGMENTS:
            ds = make_dataset(config(name, aug), items['percentile' if aug == 'randomize' else 'zscore'],
                              geometry=geometry[kind])
            order = np.random.default_rng(a.seed).integers(len(ds), size=a.n)
            try: shape = tuple(ds[int(order[0])]['image'].shape)  # warm-up
            except Exception as e: out[kind, aug] = (None, None, f"{type(e).__name__}: {e}"); continue
            t = median_time(lambda: [ds[int(i)] for i in order], a.repeats)
            out[kind, aug] = (a.n / t, shape, None)
    return out


class TimedLoader:
    "Iterates a DataLoader, recording the seconds spent in each `next` and between `next`s (the step's work)."
    def __init__(self, loader, sync=lambda: None): self.loader, self.sync, self.waits, self.work = loader, sync, [], []

    def __iter__(self):
        t0 = time.perf_counter()
        it = iter(self.loader)  # workers start here: counted in the first wait
        while True:
            try: batch = next(it)
            except StopIteration: return
            t1 = time.perf_counter(); self.waits.append(t1 - t0)
            yield batch
            self.sync(); t0 = time.perf_counter(); self.work.append(t0 - t1)


def waiting(model_name: str, augment: str, workers: int, items: dict, a) -> dict:
    "Run `steps` training steps with `train_epoch` and the trainer's DataLoader; the time spent waiting for data."
    from brainseg.train import (build_model, make_dataset, epoch_order, pad_collate, train_epoch, FitState,
                                pick_device)
    from brainseg.losses import JointLoss
    from brainseg.models import model_geometry
    from brainseg.samples import class_aware_weights
    batch = a.batch or WAIT_RUNS[model_name]
    cfg = config(model_name, augment, batch_size=batch, num_workers=workers, seed=a.seed, device=a.device)
    device = pick_device(cfg.device)
    model = build_model(cfg).to(device).train()
    ds = make_dataset(cfg, items['percentile' if augment == 'randomize' else 'zscore'], geometry=model_geometry(model))
    weights = class_aware_weights(ds.presence) if cfg.class_aware else None
    steps = a.steps + 1  # the first step (worker start-up, first batch) is reported apart
    order = epoch_order(len(ds), steps * batch, 0, cfg.seed, weights)
    batches = [order[i * batch:(i + 1) * batch] for i in range(steps)]
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)  # the step's kernels end first
    loader = TimedLoader(torch.utils.data.DataLoader(ds, batch_sampler=batches, num_workers=workers,
                                                     collate_fn=pad_collate), sync)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scaler = torch.amp.GradScaler('cuda', enabled=cfg.amp and device.type == 'cuda'
                                  and not torch.cuda.is_bf16_supported())  # as `fit` makes it
    loss_fn = JointLoss(cls_weight=cfg.cls_weight if cfg.class_head else 0.0)
    train_epoch(model, loader, FitState(), cfg, opt, scaler, loss_fn, device, steps)
    wait, work = loader.waits[1:], loader.work[1:]
    return dict(model=model_name, batch=batch, augment=augment, workers=workers,
                first_s=loader.waits[0] + loader.work[0], wait_s=statistics.median(wait),
                work_s=statistics.median(work),
                wait_share=sum(wait) / (sum(wait) + sum(work)), samples_s=batch * len(wait) / (sum(wait) + sum(work)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--size', type=int, default=240, help='in-plane size of the subjects (X = Y), 48 slices')
    p.add_argument('--subjects', type=int, default=4, help='template subjects')
    p.add_argument('--n', type=int, default=32, help='samples per timing of samples/s')
    p.add_argument('--repeats', type=int, default=3, help='timings per figure (median)')
    p.add_argument('--steps', type=int, default=6, help='timed training steps per waiting run (after the first)')
    p.add_argument('--batch', type=int, default=0, help='batch of the waiting runs; 0: U-Net 8, base network 2')
    p.add_argument('--workers', type=int, nargs='+', default=[0, 1, 2], help='DataLoader workers to try')
    p.add_argument('--models', nargs='+', default=list(WAIT_RUNS), choices=list(WAIT_RUNS),
                   help='networks of the waiting runs')
    p.add_argument('--threads', type=int, default=torch.get_num_threads(), help='torch threads of the main process')
    p.add_argument('--device', default='auto', help="where the waiting runs' steps run: auto, cpu, cuda")
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {a.threads} threads, {os.cpu_count()} cores (load average "
          f"{os.getloadavg()[0]:.1f}); {a.subjects} template subjects {a.size} x {a.size} x 48, "
          f"3 modalities; medians of {a.repeats} timings")
    with tempfile.TemporaryDirectory() as tmp:
        subjects, load_rows = loading(a, Path(tmp))
    items, geometry, prep_rows = preprocessing(a, subjects)
    print(f"\nper subject (network grid after the foreground crop: {items['zscore'][0].image.shape[1:]}):")
    print("| step | ms / subject | MB / subject on disk |\n| --- | --- | --- |")
    for what, s, mb in load_rows: print(f"| {what} | {s * 1000:.0f} | {mb:.1f} |")
    for what, s in prep_rows: print(f"| {what} | {s * 1000:.0f} | |")

    rates = sample_rates(a, items, geometry)
    print(f"\nsamples/s, one process, `__getitem__` of {a.n} random samples:")
    print("| dataset (network) | sample | " + " | ".join(AUGMENTS) + " | augment / none | randomize / none |")
    print("| --- | --- |" + " --- |" * (len(AUGMENTS) + 2))
    fmt = lambda v: 'fails' if v is None else f"{v:.1f}"
    slower = lambda u, v: '' if u is None or v is None else f"{u / v:.1f}x slower"
    for kind, name in KINDS.items():
        r = [rates[kind, aug][0] for aug in AUGMENTS]
        print(f"| {kind} ({name}) | {rates[kind, 'none'][1]} | " + " | ".join(map(fmt, r))
              + f" | {slower(r[0], r[1])} | {slower(r[0], r[2])} |")
    for (kind, aug), (_, _, error) in rates.items():
        if error: print(f"  {kind} + {aug} fails: {error}")

    print(f"\nwaiting for data: {a.steps} training steps after a first one, `train_epoch` on {a.device}, "
          f"DataLoader as `fit` builds it; s are medians per step")
    print("| network | batch | augmentation | workers | first step s | wait s | compute s | wait share | samples/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    runs = []
    for name in a.models:
        for aug in ('augment', 'randomize'):
            for w in a.workers:
                try: r = waiting(name, aug, w, items, a)
                except Exception as e:
                    print(f"| {name} | | {aug} | {w} | fails: {str(e).splitlines()[-1][:70]} | | | | |")
                    continue
                runs.append(r)
                print(f"| {name} | {r['batch']} | {aug} | {w} | {r['first_s']:.2f} | {r['wait_s']:.3f} | "
                      f"{r['work_s']:.3f} | {r['wait_share']:.0%} | {r['samples_s']:.3g} |")

    print("\nthe data pipeline must never be what a training step waits for (the trainer's default, num_workers -1: "
          "on a CPU one with randomize, else none; up to 4 on CUDA; on a CPU workers share the cores the network runs "
          "on, so the samples/s of a whole step say whether they pay):")
    for name in a.models:
        for aug in ('augment', 'randomize'):
            by = {r['workers']: r for r in runs if r['model'] == name and r['augment'] == aug}
            if not by: print(f"  {name} + {aug}: fails, no training step ran (see above)"); continue
            rate = rates[{v: k for k, v in KINDS.items()}[name], aug][0]
            first, enough = by[min(by)], [w for w, r in sorted(by.items()) if r['wait_share'] < WAIT_LIMIT]
            need = first['batch'] / first['work_s']  # samples/s the network consumes, fewest workers
            verdict = (f"needs num_workers >= {enough[0]}" if enough and enough[0] > 0 else "holds with no worker"
                       if enough else "the step waits for data with every worker count tried")
            print(f"  {name} + {aug}: the network takes {need:.1f} samples/s, one process makes {rate:.1f} "
                  f"({rate / need:.1f}x); waiting " + ", ".join(f"{r['wait_share']:.0%} with {w}"
                                                               for w, r in sorted(by.items()))
                  + f" workers: {verdict} (below {WAIT_LIMIT:.0%} of a step); training samples/s "
                  + ", ".join(f"{r['samples_s']:.3g} with {w}" for w, r in sorted(by.items())))
    return runs


if __name__ == '__main__':
    main()
