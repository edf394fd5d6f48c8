"""How a training step's time and peak memory grow with slab depth, in-plane size, batch and subjects, and what two
processes under torchrun (DDP, gloo, CPU) give over one. Prints markdown tables, saves a plot; asserts nothing.

Steps are the trainer's: a network built from a `TrainConfig` (instance norm, class head), `JointLoss`, Adam, on
random inputs of the measured shape; step time is the median of `--steps` steps after a warm-up one. Every
measurement runs in its own process, so its peak resident memory (ru_maxrss) is its own; 'step MiB' is the peak less
the process's memory before its first step. Subjects: template subjects (from the template cache) loaded,
preprocessed, made into slice and slab datasets, then one real epoch of U-Net training through `fit`. DDP: `fit`
itself under `python -m torch.distributed.run --standalone`, one thread per process, beside one process with the
same threads in all; the all-reduce of the gradients is timed alone afterwards, as its upper share of a step.
    python bench/bench_scaling.py                        # full sizes: long on a CPU (base network at 240 x 240)
    python bench/bench_scaling.py --quick                # small sizes: a few minutes on 2 cores
    python bench/bench_scaling.py --quick --only depth ddp --plot depth_ddp.png
On a machine shared with other work, OpenMP threads that spin while waiting for each other make multi-thread steps
many times slower; `OMP_WAIT_POLICY=PASSIVE python bench/...` keeps such figures readable (the header shows the load).
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import torch
from common import peak_mib

FACTORS = ['depth', 'size', 'batch', 'subjects', 'ddp']
FULL = dict(depths=(11, 19, 27, 35), sizes=(64, 128, 240), batches=(1, 2, 4, 8), subjects=(2, 4, 8), ref=128,
            subject_size=240, base_batch=2, unet_batch=8, ddp_batch=8, steps=3)
QUICK = dict(depths=(11, 19, 27, 35), sizes=(64, 96, 128), batches=(1, 2, 4, 8), subjects=(2, 4, 8), ref=64,
             subject_size=64, base_batch=1, unet_batch=8, ddp_batch=8, steps=2)
SLICES_LOST = 8  # the base network without fuse padding: 19 slices in, 11 out


def config(model: str, **kw):
    from brainseg.train import TrainConfig
    return TrainConfig(model=model, **{'device': 'cpu', **kw})


def step_child(model: str, size: int, batch: int, depth: int, steps: int, device: str) -> dict:
    "In a child process: time training steps of one network on one input shape; figures as a dict."
    from brainseg.train import build_model, pick_device
    from brainseg.losses import JointLoss
    dev = pick_device(device)
    cfg = config(model, slab=depth, device=device)
    net = build_model(cfg).to(dev).train()
    loss_fn, opt = JointLoss(cls_weight=cfg.cls_weight), torch.optim.Adam(net.parameters(), lr=cfg.lr)
    out_slices = depth - SLICES_LOST if model == 'base' else 1
    image = (torch.randn(batch, 3, depth, size, size) if model == 'base' else torch.randn(batch, 3, size, size))
    target = torch.randint(0, 9, (batch, out_slices, size, size) if model == 'base' else (batch, size, size))
    roi = torch.randint(0, 2, (batch, out_slices, 8) if model == 'base' else (batch, 8)).float()
    data = {'image': image.to(dev), 'target': target.to(dev), 'roi': roi.to(dev)}
    sync = torch.cuda.synchronize if dev.type == 'cuda' else (lambda: None)
    before = peak_mib() if dev.type == 'cpu' else 0.0
    times = []
    for _ in range(steps + 1):
        sync(); t0 = time.perf_counter()
        loss, _ = loss_fn(net(data['image']), data)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        sync(); times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == 'cuda' else peak_mib()
    step = statistics.median(times[1:])
    return dict(model=model, size=size, batch=batch, depth=depth if model == 'base' else 1, step_s=step,
                out_slices=batch * out_slices, s_per_out_slice=step / (batch * out_slices), peak_MiB=peak,
                step_MiB=peak - before)


def subjects_child(n: int, size: int, batch: int, device: str) -> dict:
    "In a child process: load, preprocess and make datasets of `n` template subjects, then one U-Net epoch of `fit`."
    from brainseg.template import template_subjects, load_template, template_anatomy
    from brainseg.data import preprocess
    from brainseg.train import make_dataset, build_model, fit, batch_source, pick_device
    from brainseg.models import model_geometry
    load_template(); template_anatomy()  # once per process, whatever the number of subjects
    idle = peak_mib()
    t0 = time.perf_counter(); subjects = template_subjects(n, shape=(size, size, 48))
    t1 = time.perf_counter(); items = [preprocess(s) for s in subjects]
    t2 = time.perf_counter()
    ucfg = config('unet', batch_size=batch, epochs=1, device=device)
    unet = build_model(ucfg)
    slices = make_dataset(ucfg, items, geometry=model_geometry(unet))
    slabs = make_dataset(config('base'), items, geometry=dict(kind='slab', slices_lost=SLICES_LOST))
    t3 = time.perf_counter()
    held = slices.nbytes / 2**20  # what one dataset holds
    source = batch_source(ucfg, slices, pick_device(device), log=lambda *a: None)
    with tempfile.TemporaryDirectory() as out:
        history = fit(unet, source, [], ucfg, out, resume=False, log=lambda *a: None, progress=False)
    steps = max(1, len(slices) // batch)
    return dict(subjects=n, size=size, load_s=t1 - t0, preprocess_s=t2 - t1, datasets_s=t3 - t2, dataset_MiB=held,
                slices=len(slices), slabs=len(slabs), epoch_steps=steps, epoch_s=history[-1]['seconds'],
                ms_per_sample=history[-1]['seconds'] / (steps * batch) * 1000, data_MiB=peak_mib() - idle,
                peak_MiB=peak_mib())


def ddp_worker(size: int, batch: int, steps: int, threads: int) -> None:
    "Under torchrun or alone: `fit` a U-Net for 2 epochs of `steps` steps; rank 0 prints one RESULT line."
    import torch.distributed as dist
    from brainseg.template import template_subjects
    from brainseg.data import preprocess
    from brainseg.train import make_dataset, build_model, fit, dist_info, batch_source, pick_device
    from brainseg.models import model_geometry
    torch.set_num_threads(threads)
    rank, world, _ = dist_info()
    cfg = config('unet', batch_size=batch, epochs=2, iters_per_epoch=steps, augment='none')
    model = build_model(cfg)
    ds = make_dataset(cfg, [preprocess(s) for s in template_subjects(2, shape=(size, size, 48))],
                      geometry=model_geometry(model))
    source = batch_source(cfg, ds, pick_device(cfg.device), log=lambda *a: None)
    with tempfile.TemporaryDirectory() as out:
        history = fit(model, source, [], cfg, out, resume=False, log=lambda *a: None, progress=False)
    allreduce, peaks = float('nan'), [peak_mib()]
    if world > 1:
        grads = torch.zeros(sum(p.numel() for p in model.parameters()))
        times = []
        for _ in range(10):
            dist.barrier(); t0 = time.perf_counter(); dist.all_reduce(grads); times.append(time.perf_counter() - t0)
        allreduce, peaks = statistics.median(times), [None] * world
        dist.all_gather_object(peaks, peak_mib())
        dist.destroy_process_group()
    if rank == 0:
        step = history[-1]['seconds'] / steps  # the second epoch: the first warms up
        print('RESULT ' + json.dumps(dict(processes=world, threads=threads, batch=batch, global_batch=batch * world,
                                          step_s=step, samples_s=batch * world / step, allreduce_s=allreduce,
                                          peak_MiB=sum(peaks), size=size)))


def child(args: list, env=None) -> dict:
    "Run this script with `args` in its own process; the dict it prints last, or {'error': ...}."
    r = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    lines = [x for x in r.stdout.splitlines() if x.startswith('{')]
    if r.returncode or not lines: return {'error': (r.stderr or r.stdout).strip().splitlines()[-1:]}
    return json.loads(lines[-1])


def ddp_run(processes: int, threads: int, batch: int, size: int, steps: int) -> dict:
    "`ddp_worker` alone (1 process) or under torchrun; its RESULT, or {'error': ...}."
    env = {**os.environ, 'OMP_NUM_THREADS': str(threads)}
    worker = [__file__, '--ddp-worker', json.dumps(dict(size=size, batch=batch, steps=steps, threads=threads))]
    launch = ['-m', 'torch.distributed.run', '--nproc_per_node', str(processes), '--standalone']
    if processes == 1: launch = []
    r = subprocess.run([sys.executable, *launch, *worker], capture_output=True, text=True, env=env)
    lines = [x for x in r.stdout.splitlines() if x.startswith('RESULT ')]
    if r.returncode or not lines: return {'error': (r.stderr or r.stdout).strip().splitlines()[-3:]}
    return json.loads(lines[-1][len('RESULT '):])


def table(title: str, rows: list, cols: list) -> None:
    "Print rows (dicts) as a markdown table of `cols`: (header, key, format)."
    print(f"\n{title}\n| " + " | ".join(h for h, _, _ in cols) + " |\n|" + " --- |" * len(cols))
    for r in rows:
        if 'error' in r: print(f"| failed: {' '.join(r['error'])[:200]} |"); continue
        cell = lambda v, f: v if isinstance(v, str) else '-' if v != v else format(v, f)  # v != v: NaN
        print("| " + " | ".join(cell(r[k], f) for _, k, f in cols) + " |")


STEP_COLS = [('network', 'model', ''), ('size', 'size', 'd'), ('batch', 'batch', 'd'), ('input slices', 'depth', 'd'),
             ('step s', 'step_s', '.3f'), ('out slices', 'out_slices', 'd'), ('ms / out slice', 'ms_per_slice', '.1f'),
             ('peak MiB', 'peak_MiB', '.0f'), ('step MiB', 'step_MiB', '.0f')]


def plot(results: dict, path: str) -> None:
    "Step time and peak memory against each factor, one column per factor; saved as a PNG."
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    ok = lambda rows: [r for r in rows if 'error' not in r]
    cols = [f for f in FACTORS if results.get(f)]
    fig, axes = plt.subplots(2, len(cols), figsize=(4 * len(cols), 6.5), squeeze=False)
    for j, factor in enumerate(cols):
        top, bottom, rows = axes[0, j], axes[1, j], ok(results[factor])
        if factor in ('depth', 'size', 'batch'):
            key = {'depth': 'depth', 'size': 'size', 'batch': 'batch'}[factor]
            for model in sorted({r['model'] for r in rows}):
                mine = [r for r in rows if r['model'] == model]
                x = [r[key] for r in mine]
                top.plot(x, [r['step_s'] for r in mine], 'o-', label=f"{model} step")
                bottom.plot(x, [r['peak_MiB'] for r in mine], 'o-', label=model)
                if factor == 'depth':
                    twin = top.twinx()
                    twin.plot(x, [r['ms_per_slice'] for r in mine], 's--', color='C1', label='ms / output slice')
                    twin.set_ylabel('ms / output slice'); twin.set_ylim(bottom=0); twin.legend(fontsize=7, loc='center')
            for ax in (top, bottom):
                ax.set_xlabel({'depth': 'input slices (base network)', 'size': 'in-plane size (voxels)',
                               'batch': 'batch'}[factor])
            if factor != 'depth': top.set_yscale('log')  # the base network's steps are ~10x the U-Net's
            for ax in (top, bottom): ax.set_xticks(sorted({r[key] for r in rows}))
            top.set_ylabel('step s (log)' if factor != 'depth' else 'step s')
        elif factor == 'subjects':
            x = [r['subjects'] for r in rows]
            top.plot(x, [r['epoch_s'] for r in rows], 'o-', label='U-Net epoch (fit)')
            top.set_ylabel('epoch s'); top.set_xlabel('template subjects'); bottom.set_xlabel('template subjects')
            bottom.plot(x, [r['peak_MiB'] for r in rows], 'o-', label='peak')
            bottom.plot(x, [r['dataset_MiB'] for r in rows], 's--', label='dataset arrays')
        else:
            names = [f"{r['processes']}p x {r['threads']}t\nbatch {r['global_batch']}" for r in rows]
            top.bar(names, [r['samples_s'] for r in rows]); top.set_ylabel('samples / s (U-Net)')
            bottom.bar(names, [r['peak_MiB'] for r in rows])
        bottom.set_ylabel('peak MiB (all processes)' if factor == 'ddp' else 'peak MiB')
        top.set_title(factor); top.grid(alpha=0.3); bottom.grid(alpha=0.3)
        for ax in (top, bottom):
            if ax.get_legend_handles_labels()[0]: ax.legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--quick', action='store_true', help='small sizes: a few minutes on 2 cores')
    p.add_argument('--only', nargs='+', choices=FACTORS, default=FACTORS, help='factors to measure')
    p.add_argument('--steps', type=int, help='timed steps per measurement (default: 3, quick 2)')
    p.add_argument('--threads', type=int, default=torch.get_num_threads(), help='torch threads per single process')
    p.add_argument('--device', default='cpu', help='where the step sweeps run: cpu or cuda (DDP: CPU only)')
    p.add_argument('--plot', default=str(Path(__file__).parent / 'scaling.png'), help='the PNG (default: %(default)s)')
    p.add_argument('--child', help=argparse.SUPPRESS)
    p.add_argument('--ddp-worker', help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        kw = json.loads(a.child); torch.set_num_threads(a.threads)
        what = kw.pop('what')
        print(json.dumps(step_child(**kw) if what == 'step' else subjects_child(**kw))); return
    if a.ddp_worker: ddp_worker(**json.loads(a.ddp_worker)); return
    s = {**(QUICK if a.quick else FULL), **({'steps': a.steps} if a.steps else {})}
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {a.threads} threads, {os.cpu_count()} cores (load average {load:.1f}"
          f"{': busy, figures noisy' if load > os.cpu_count() - 0.5 else ''}), device {a.device}; "
          f"{'quick' if a.quick else 'full'} sizes; step s: median of {s['steps']} steps after a warm-up one")
    t_all, results = time.perf_counter(), {}
    def step(model, size, batch, depth=19):
        r = child(['--child', json.dumps(dict(what='step', model=model, size=size, batch=batch, depth=depth,
                                              steps=s['steps'], device=a.device)), '--threads', str(a.threads)])
        if 'error' not in r: r['ms_per_slice'] = r['s_per_out_slice'] * 1000
        return r

    if 'depth' in a.only:
        results['depth'] = [step('base', s['ref'], s['base_batch'], k) for k in s['depths']]
        table(f"slab depth: base network, {s['ref']} x {s['ref']}, batch {s['base_batch']} ({SLICES_LOST} slices "
              "lost without padding)", results['depth'], STEP_COLS)
    if 'size' in a.only:
        results['size'] = [step(m, n, s[f"{m}_batch"]) for m in ('unet', 'base') for n in s['sizes']]
        table(f"in-plane size: U-Net batch {s['unet_batch']}, base network batch {s['base_batch']} x 19 slices",
              results['size'], STEP_COLS)
    if 'batch' in a.only:
        results['batch'] = [step(m, s['ref'], b) for m in ('unet', 'base') for b in s['batches']]
        table(f"batch: {s['ref']} x {s['ref']}", results['batch'], STEP_COLS)
    if 'subjects' in a.only:
        from brainseg.template import template_subjects
        template_subjects(max(s['subjects']), shape=(s['subject_size'],) * 2 + (48,))  # the cache filled first
        results['subjects'] = [child(['--child', json.dumps(dict(what='subjects', n=n, size=s['subject_size'],
                                                                 batch=s['unet_batch'], device='cpu')),
                                      '--threads', str(a.threads)]) for n in s['subjects']]
        table(f"subjects: template subjects {s['subject_size']} x {s['subject_size']} x 48 from the cache; one U-Net "
              f"epoch (all slices, batch {s['unet_batch']}) through `fit`", results['subjects'],
              [('subjects', 'subjects', 'd'), ('load s', 'load_s', '.2f'), ('preprocess s', 'preprocess_s', '.2f'),
               ('datasets s', 'datasets_s', '.2f'), ('slices', 'slices', 'd'), ('slabs', 'slabs', 'd'),
               ('dataset MiB', 'dataset_MiB', '.0f'), ('epoch steps', 'epoch_steps', 'd'),
               ('epoch s', 'epoch_s', '.1f'), ('ms / sample', 'ms_per_sample', '.1f'), ('peak MiB', 'peak_MiB', '.0f')])
    if 'ddp' in a.only:
        b, steps = s['ddp_batch'], max(5, s['steps'])  # a U-Net step is short: more of them
        runs = [(1, a.threads, b), (2, 1, b // 2), (2, 1, b), (1, 1, b // 2)]
        results['ddp'] = [ddp_run(n, t, bb, s['ref'], steps) for n, t, bb in runs]
        for r in results['ddp']:
            if 'error' not in r:
                r['how'] = f"{r['processes']} x {r['threads']} thread{'s' * (r['threads'] > 1)}"
                r['allreduce_share'] = r['allreduce_s'] / r['step_s'] if r['processes'] > 1 else float('nan')
        table(f"DDP on CPU (gloo): U-Net {s['ref']} x {s['ref']}, `fit` for 2 epochs of {steps} steps, augment off; "
              "step s: the second epoch", results['ddp'],
              [('processes x threads', 'how', ''), ('batch / process', 'batch', 'd'),
               ('global batch', 'global_batch', 'd'),
               ('step s', 'step_s', '.3f'), ('samples/s', 'samples_s', '.1f'), ('all-reduce s', 'allreduce_s', '.4f'),
               ('all-reduce share', 'allreduce_share', '.1%'), ('peak MiB (sum)', 'peak_MiB', '.0f')])
    ratios(results, s, a)
    plot(results, a.plot)
    print(f"\nplot: {os.path.relpath(a.plot)}   ({time.perf_counter() - t_all:.0f} s in all)")
    return results


def ratios(results: dict, s: dict, a) -> None:
    "The growth factors the tables imply."
    ok = lambda key: [r for r in results.get(key, []) if 'error' not in r]
    print("\nratios:")
    d = ok('depth')
    if len(d) > 1:
        print(f"  depth {d[0]['depth']} -> {d[-1]['depth']} input slices ({d[-1]['depth'] / d[0]['depth']:.1f}x): step "
              f"{d[-1]['step_s'] / d[0]['step_s']:.1f}x, per output slice "
              f"{d[-1]['ms_per_slice'] / d[0]['ms_per_slice']:.2f}x, step memory "
              f"{d[-1]['step_MiB'] / max(d[0]['step_MiB'], 1):.1f}x")
    for factor, key in (('size', 'size'), ('batch', 'batch')):
        for m in ('unet', 'base'):
            rows = [r for r in ok(factor) if r['model'] == m]
            if len(rows) > 1:
                x = rows[-1][key] / rows[0][key]
                print(f"  {m} {factor} {rows[0][key]} -> {rows[-1][key]} ({x ** (2 if factor == 'size' else 1):.1f}x "
                      f"the voxels): step {rows[-1]['step_s'] / rows[0]['step_s']:.1f}x, step memory "
                      f"{rows[-1]['step_MiB'] / max(rows[0]['step_MiB'], 1):.1f}x")
    n = ok('subjects')
    if len(n) > 1:
        print(f"  subjects {n[0]['subjects']} -> {n[-1]['subjects']}: slices {n[-1]['slices'] / n[0]['slices']:.1f}x, "
              f"epoch {n[-1]['epoch_s'] / n[0]['epoch_s']:.1f}x, dataset memory "
              f"{n[-1]['dataset_MiB'] / n[0]['dataset_MiB']:.1f}x, peak {n[-1]['peak_MiB'] / n[0]['peak_MiB']:.2f}x")
    dd = {(r['processes'], r['threads'], r['batch']): r for r in ok('ddp')}
    b, one, two = s['ddp_batch'], (1, a.threads, s['ddp_batch']), (2, 1, s['ddp_batch'] // 2)
    if one in dd and two in dd:
        print(f"  same global batch {b}: 2 processes x 1 thread / 1 process x {a.threads} threads: throughput "
              f"{dd[two]['samples_s'] / dd[one]['samples_s']:.2f}x, memory "
              f"{dd[two]['peak_MiB'] / dd[one]['peak_MiB']:.2f}x")
    alone = dd.get((1, 1, b // 2))
    if alone and two in dd:
        print(f"  scale-out cost: a DDP step of batch {b // 2} per process / the same step alone on 1 thread: "
              f"{dd[two]['step_s'] / alone['step_s']:.2f}x; all-reduce of the gradients alone "
              f"{dd[two]['allreduce_s'] * 1000:.1f} ms = {dd[two]['allreduce_share']:.1%} of the DDP step")
    if (2, 1, b) in dd and one in dd:
        print(f"  batch {b} per process (global {2 * b}): throughput "
              f"{dd[2, 1, b]['samples_s'] / dd[one]['samples_s']:.2f}x the single process's")


if __name__ == '__main__':
    main()
