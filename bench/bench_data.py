"""The data pipeline, old against new in one run: samples/s of each dataset kind and transform, and the share of a
training step spent waiting for its batch. Prints tables; asserts nothing.

Old: what the trainer did before (`legacy_data.py`): per-sample numpy / scipy in `Dataset.__getitem__`, batched by a
DataLoader (0 or 1 worker processes), then moved to the device. New: the trainer's `samples.BatchSource`: subjects
held on the training device, a whole batch gathered and transformed there at once. Subjects are template subjects
(ICBM152 + CerebrA) of `--size` x `--size` x 48 voxels, 3 modalities. Samples/s: `--n` samples of slices (U-Net),
19-slice slabs (base network) and 16 x 64 x 64 patches (V-Net) with no transform, `standard` and `randomize`, median
of `--repeats` timings (old: one `__getitem__` each; new: batches of `--batch-size`). Waiting: the trainer's own
`train_epoch` for `--steps` steps after a first one, the time spent getting each batch taken apart from forward,
backward and optimizer step (on CUDA both are synchronized).
    python bench/bench_data.py                          # 240 x 240 x 48, 4 subjects: about 15 min on 2 cores
    python bench/bench_data.py --quick                  # 96 x 96 x 48, 2 subjects: a few minutes
    python bench/bench_data.py --device cuda --batch-size 8 64 --models unet base    # on a GPU
On a machine shared with other work, OpenMP threads that spin while waiting for each other make multi-thread steps
many times slower; `OMP_WAIT_POLICY=PASSIVE python bench/...` keeps such figures readable (the header shows the load).
"""
import argparse, os, statistics, time
import numpy as np
import torch
from common import timed
import legacy_data

KINDS = {'slice': 'unet', 'slab': 'base', 'patch': 'vnet'}  # dataset kind -> the network that takes it
AUGMENTS = ('none', 'standard', 'randomize')
WAIT_LIMIT = 0.05  # share of a step spent getting its batch above which the step waits for data


def median_time(fn, repeats: int, sync=lambda: None) -> float:
    "Median seconds of `repeats` calls of `fn` (each ended by `sync`)."
    def once():
        t0 = time.perf_counter(); fn(); sync(); return time.perf_counter() - t0
    return statistics.median(once() for _ in range(repeats))


def config(model: str, augment: str, **kw):
    "The `TrainConfig` of a network and a transform (randomize: percentile-normalized inputs)."
    from brainseg.trainconfig import TrainConfig
    return TrainConfig(model=model, augment=augment, normalize='percentile' if augment == 'randomize' else 'zscore',
                       **kw)


def subjects_and_items(a) -> dict:
    "Preprocessed template subjects by normalization."
    from brainseg.template import template_subjects
    from brainseg.data import preprocess
    subjects = template_subjects(a.subjects, a.seed, shape=(a.size, a.size, 48))
    return {norm: [preprocess(s, normalize=norm) for s in subjects] for norm in ('zscore', 'percentile')}


def sample_rates(a, items: dict, device: torch.device, sync) -> dict:
    "{(kind, augment): (old samples/s, new samples/s, sample shape)}."
    from brainseg.train import make_dataset, batch_source
    from brainseg.models import make_model, model_geometry
    out = {}
    for kind, name in KINDS.items():
        geometry = model_geometry(make_model(name))
        for aug in AUGMENTS:
            its = items['percentile' if aug == 'randomize' else 'zscore']
            old = legacy_data.legacy_dataset(kind, its, aug, margin=geometry['slices_lost'] // 2, seed=a.seed)
            order = np.random.default_rng(a.seed).integers(len(old), size=a.n)
            old[int(order[0])]  # warm-up
            t_old = median_time(lambda: [old[int(i)] for i in order], a.repeats)
            cfg = config(name, aug, batch_size=a.batch_size[0], seed=a.seed)
            source = batch_source(cfg, make_dataset(cfg, its, geometry=geometry), device, log=lambda *x: None)
            steps = max(1, a.n // cfg.batch_size)
            source(0, 0); sync()  # warm-up
            t_new = median_time(lambda: [source(0, s % source.steps) for s in range(steps)], a.repeats, sync)
            shape = tuple(source(0, 0)['image'].shape[1:])
            out[kind, aug] = (a.n / t_old, steps * cfg.batch_size / t_new, shape)
    return out


class TimedSource:
    "Wraps a batch source: the seconds spent getting each batch, and between batches (the step's own work)."
    def __init__(self, source, sync):
        self.source, self.sync, self.waits, self.work, self.t0 = source, sync, [], [], None

    def __call__(self, epoch, step):
        self.sync(); t1 = time.perf_counter()
        if self.t0 is not None: self.work.append(t1 - self.t0)
        batch = self.source(epoch, step)
        self.sync(); self.t0 = time.perf_counter(); self.waits.append(self.t0 - t1)
        return batch

    def end(self):
        self.sync(); self.work.append(time.perf_counter() - self.t0)


def old_source(cfg, items, geometry, workers: int, steps: int, device):
    "The trainer's batches as they were made before: a DataLoader over per-sample numpy, moved to the device."
    from brainseg.samples import epoch_order
    ds = legacy_data.legacy_dataset(geometry['kind'], items, cfg.augment, k=cfg.slab,
                                    margin=geometry['slices_lost'] // 2, patch=cfg.patch, seed=cfg.seed)
    weights = legacy_data.class_aware_weights(ds.presence) if hasattr(ds, 'presence') else None
    order = epoch_order(len(ds), steps * cfg.batch_size, 0, cfg.seed, weights)
    batches = [order[i * cfg.batch_size:(i + 1) * cfg.batch_size] for i in range(steps)]
    it = iter(torch.utils.data.DataLoader(ds, batch_sampler=batches, num_workers=workers,
                                          collate_fn=legacy_data.pad_collate, pin_memory=device.type == 'cuda'))
    return lambda epoch, step: {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
                                for k, v in next(it).items()}


def waiting(name: str, augment: str, path: str, batch: int, items: dict, a) -> dict:
    "`train_epoch` for 1 + `steps` steps with the old ('old-0', 'old-1': DataLoader workers) or new batches."
    from brainseg.train import build_model, make_dataset, batch_source, train_epoch, FitState, pick_device
    from brainseg.losses import JointLoss
    from brainseg.models import model_geometry
    cfg = config(name, augment, batch_size=batch, seed=a.seed, device=a.device)
    device = pick_device(cfg.device)
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    model = build_model(cfg).to(device).train()
    its, geometry = items['percentile' if augment == 'randomize' else 'zscore'], model_geometry(model)
    steps = a.steps + 1
    if path == 'new':
        source = batch_source(cfg.replace(iters_per_epoch=steps), make_dataset(cfg, its, geometry=geometry), device,
                              log=lambda *x: None)
    else: source = old_source(cfg, its, geometry, int(path[-1]), steps, device)
    timed_source = TimedSource(source, sync)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scaler = torch.amp.GradScaler('cuda', enabled=cfg.amp and device.type == 'cuda'
                                  and not torch.cuda.is_bf16_supported())
    loss_fn = JointLoss(cls_weight=cfg.cls_weight if cfg.class_head else 0.0)
    train_epoch(model, timed_source, FitState(), cfg, opt, scaler, loss_fn, device, steps)
    timed_source.end()
    wait, work = timed_source.waits[1:], timed_source.work[1:]
    first = timed_source.waits[0] + timed_source.work[0]
    return dict(model=name, batch=batch, augment=augment, path=path, first_s=first, wait_s=statistics.median(wait),
                work_s=statistics.median(work), wait_share=sum(wait) / (sum(wait) + sum(work)),
                samples_s=batch * len(wait) / (sum(wait) + sum(work)))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--size', type=int, default=240, help='in-plane size of the subjects (X = Y), 48 slices')
    p.add_argument('--subjects', type=int, default=4, help='template subjects')
    p.add_argument('--n', type=int, default=32, help='samples per timing of samples/s')
    p.add_argument('--repeats', type=int, default=3, help='timings per figure (median)')
    p.add_argument('--steps', type=int, default=6, help='timed training steps per waiting run (after the first)')
    p.add_argument('--batch-size', type=int, nargs='+', default=[8], help='batches of the waiting runs (the first '
                   'also for samples/s); the base network takes a quarter of each (at least 1)')
    p.add_argument('--paths', nargs='+', default=['old-0', 'old-1', 'new'],
                   help="batches of the waiting runs: 'old-W' (DataLoader with W workers over per-sample numpy), 'new'")
    p.add_argument('--models', nargs='+', default=['unet', 'base'], choices=['unet', 'base', 'vnet'],
                   help='networks of the waiting runs')
    p.add_argument('--threads', type=int, default=torch.get_num_threads(), help='torch threads of the main process')
    p.add_argument('--device', default='auto', help="where the steps and new batches run: auto, cpu, cuda")
    p.add_argument('--quick', action='store_true', help='96 x 96, 2 subjects, 16 samples, 4 steps')
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args(argv)
    if a.quick: a.size, a.subjects, a.n, a.steps = 96, 2, 16, 4
    torch.set_num_threads(a.threads)
    from brainseg.checkpoints import pick_device
    device = pick_device(a.device)
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    print(f"torch {torch.__version__}, {a.threads} threads, {os.cpu_count()} cores (load average "
          f"{os.getloadavg()[0]:.1f}), {device}; {a.subjects} template subjects {a.size} x {a.size} x 48, "
          f"3 modalities; medians of {a.repeats} timings")
    items, t = timed(lambda: subjects_and_items(a))
    print(f"subjects made and preprocessed in {t:.0f} s")

    rates = sample_rates(a, items, device, sync)
    print(f"\nsamples/s of {a.n} samples: old = per-sample numpy in one process, new = batches of {a.batch_size[0]} on "
          f"{device}")
    print("| dataset (network) | sample | transform | old | new | new / old |\n| --- | --- | --- | --- | --- | --- |")
    for (kind, aug), (old, new, shape) in rates.items():
        print(f"| {kind} ({KINDS[kind]}) | {shape} | {aug} | {old:.1f} | {new:.1f} | {new / old:.1f}x |")

    print(f"\nwaiting for data: `train_epoch` on {device}, {a.steps} steps after a first one; s are medians per step")
    print("| network | batch | transform | batches | first step s | wait s | compute s | wait share | samples/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    runs = []
    for name in a.models:
        for batch in a.batch_size:
            batch = max(1, batch // 4) if name == 'base' else batch
            for aug in ('standard', 'randomize'):
                for path in a.paths:
                    try: r = waiting(name, aug, path, batch, items, a)
                    except Exception as e:
                        print(f"| {name} | {batch} | {aug} | {path} | fails: {str(e).splitlines()[-1][:70]} | | | | |")
                        continue
                    runs.append(r)
                    print(f"| {name} | {batch} | {aug} | {path} | {r['first_s']:.2f} | {r['wait_s']:.3f} | "
                          f"{r['work_s']:.3f} | {r['wait_share']:.1%} | {r['samples_s']:.3g} |")

    print(f"\ngoals: a step waits for its batch less than {WAIT_LIMIT:.0%} of the time; with randomize, a step is no "
          "slower than before (new / old samples/s per step, against the better old path) and its batch costs at most "
          "10% of it")
    for name in a.models:
        for batch in sorted({r['batch'] for r in runs if r['model'] == name}):
            for aug in ('standard', 'randomize'):
                by = {r['path']: r for r in runs if (r['model'], r['batch'], r['augment']) == (name, batch, aug)}
                if 'new' not in by: continue
                new, olds = by['new'], [r for k, r in by.items() if k != 'new']
                best = max(olds, key=lambda r: r['samples_s']) if olds else None
                vs = f", {new['samples_s'] / best['samples_s']:.2f}x the old step ({best['path']})" if best else ''
                share = new['wait_share']
                print(f"  {name} batch {batch} + {aug}: the batch is {share:.1%} of a step (< {WAIT_LIMIT:.0%}: "
                      f"{'yes' if share < WAIT_LIMIT else 'no'}; <= 10%: {'yes' if share <= 0.1 else 'no'}){vs}")
    return runs


if __name__ == '__main__':
    main()
