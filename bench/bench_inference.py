"""Whole-volume inference time of brainseg's networks and cascade from a `Subject`, next to MONAI's sliding window path.

The subject is a phantom of MRBrainS18's grid (240 x 240 x 48, T1, T1-IR, FLAIR). Each brainseg model runs through
`predict_subject`, as users call it: z-score per modality, crop to the head's box, the network over the volume, labels
back on the subject grid; the time spent in each step is read off the library's own functions during that call. The
single networks are what `brainseg train --model NAME` builds (untrained weights: timing only); the cascade is the
shipped demo cascade `demo:proposed` (its trained weights give the later stages real boxes to run on); `pretrained`
is `pretrained:multi`, the model for real scans, which resamples to its 1.92 x 1.92 x 3 mm grid and back. The peer is
MONAI's 2D UNet(2, 3, 9, channels=(32, 64, 128, 256), strides=(2, 2, 2), num_res_units=2) run by
`sliding_window_inference` on every axial slice, after MONAI's NormalizeIntensity(nonzero=True, channel_wise=True):
both honest ways are timed (the Z slices as a batch of (X, Y) windows, or (X, Y, 1) windows of the 3D volume through
a squeezing wrapper) and the faster is the MONAI path the ratios use; it is also timed on brainseg's preprocessing
(same z-score and crop), which separates the crop's gain from the network's. Median of `--repeats` timed calls after
one warm-up call; prints a table, where the time goes, and the goals as met / not met; asserts nothing.
    python bench/bench_inference.py                                   # 240 x 240 x 48, 2 threads, 3 repeats
    python bench/bench_inference.py --size 128 --depth 24 --repeats 1 --only unet base
    python bench/bench_inference.py --repeats 1 --windows slices --only vnet   # full size, one network, one windowing
"""
import argparse, os, time
from contextlib import contextmanager
from functools import partial
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode
from monai.inferers import sliding_window_inference
from monai.networks.nets import UNet as MonaiUNet
from monai.transforms import NormalizeIntensity
import brainseg.cascade, brainseg.infer
from brainseg.experiments import pretrained_path
from brainseg.infer import load_predictor, predict_subject
from brainseg.io import Subject
from brainseg.phantom import make_phantom
from brainseg.train import TrainConfig, build_model
from common import gemm_gflops

MODELS = ['unet', 'base', 'vnet', 'cascade', 'pretrained']
WINDOWS = ('slices', 'roi3d')  # MONAI's two ways over the slices
SINGLE = ['unet', 'base', 'vnet']  # the networks the goals are about
GOAL_S, GOAL_RATIO = 2.0, 1.5  # seconds per volume on 2 CPU cores; times faster than the MONAI path
# the library's steps of `predict_subject`, as (module, function name) where it looks them up
PARTS = {'preprocess': [(brainseg.infer, 'preprocess')], 'resample': [(brainseg.infer, 'resample')],
         'network': [(brainseg.infer, 'predict_volume'), (brainseg.cascade, 'predict_volume')]}

def build(name):
    "(model in eval mode, how it was made)."
    if name in SINGLE:
        return build_model(TrainConfig(model=name)).eval(), f"build_model(TrainConfig(model={name!r}))"
    path = pretrained_path('demo:proposed' if name == 'cascade' else 'pretrained:multi')
    return load_predictor(path)[0].eval(), f"load_predictor({path.parent.name}/{path.name})"

@contextmanager
def timed_parts(spent: dict, grids: list):
    "Add the seconds spent in each of `PARTS` to `spent` and the network input shapes to `grids`, inside the block."
    saved = []
    def timed(part, fn):
        def run(*args, **kwargs):
            if part == 'network': grids.append(tuple(np.shape(args[1])[1:]))
            t0 = time.perf_counter()
            try: return fn(*args, **kwargs)
            finally: spent[part] = spent.get(part, 0.0) + time.perf_counter() - t0
        return run
    for part, places in PARTS.items():
        for module, name in places:
            saved.append((module, name, getattr(module, name)))
            setattr(module, name, timed(part, saved[-1][2]))
    try: yield
    finally:
        for module, name, fn in saved: setattr(module, name, fn)

class Squeeze(torch.nn.Module):
    "A 2D network run on (B, C, H, W, 1) windows of a 3D volume: (B, n_classes, H, W, 1)."
    def __init__(self, net): super().__init__(); self.net = net
    def forward(self, x): return self.net(x[..., 0])[..., None]

def monai_unet():
    torch.manual_seed(0)
    return MonaiUNet(2, 3, 9, channels=(32, 64, 128, 256), strides=(2, 2, 2), num_res_units=2).eval()

def monai_labels(net, image, windows, batch_size, device, spent):
    "Label map (X, Y, Z) uint8 of a 2D network over the axial slices of `image` (C, X, Y, Z), by MONAI's windows."
    x = torch.as_tensor(image, device=device)
    t0 = time.perf_counter()
    if windows == 'slices':  # the Z slices as a batch (Z, C, X, Y), one (X, Y) window each
        prob = sliding_window_inference(x.permute(3, 0, 1, 2), x.shape[1:3], batch_size, net).permute(1, 2, 3, 0)
    else:  # one volume (1, C, X, Y, Z), (X, Y, 1) windows
        prob = sliding_window_inference(x[None], (*x.shape[1:3], 1), batch_size, Squeeze(net))[0]
    if device == 'cuda': torch.cuda.synchronize()
    spent['network'] = time.perf_counter() - t0
    return prob.argmax(0).to(torch.uint8).cpu().numpy()

def monai_path(net, subject, windows, batch_size, device, spent, grids):
    "MONAI's path: NormalizeIntensity (z-score over non-zero voxels, per channel), then `monai_labels`."
    t0 = time.perf_counter()
    image = NormalizeIntensity(nonzero=True, channel_wise=True)(torch.as_tensor(subject.stack()))
    image = image.as_tensor()  # a plain tensor: the network runs without MetaTensor's tracking, MONAI's fastest
    spent['preprocess'] = time.perf_counter() - t0
    grids.append(tuple(image.shape[1:][::-1]))
    return monai_labels(net, image, windows, batch_size, device, spent)

def monai_on_brainseg_prep(net, subject, windows, batch_size, device, spent, grids):
    "MONAI's network and windows on brainseg's preprocessing (z-score, head box), labels back on the subject grid."
    t0 = time.perf_counter()
    p = brainseg.infer.preprocess(subject)
    spent['preprocess'] = time.perf_counter() - t0
    grids.append(tuple(p.image.shape[1:][::-1]))
    return p.invert(monai_labels(net, p.image, windows, batch_size, device, spent))

def timed_rounds(runs, repeats):
    "Per run, the median seconds of its `repeats` calls and of each part; the runs take turns, round by round."
    totals, cpu, parts = ({k: [] for k in runs} for _ in range(3))
    grids = {}
    for _ in range(repeats):
        for k, fn in runs.items():  # interleaved: a change in the machine's load falls on every run alike
            spent, grids[k] = {}, []
            t0, c0 = time.perf_counter(), time.process_time()
            fn(spent, grids[k])
            totals[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
            parts[k].append(spent)
    median = lambda k, part: float(np.median([d.get(part, 0.0) for d in parts[k]]))
    return {k: dict(s=float(np.median(totals[k])), cpu=float(np.median(cpu[k])), grids=grids[k],
                    **{q: median(k, q) for q in set().union(*parts[k])}) for k in runs}

def n_params(model): return sum(p.numel() for p in model.parameters()) / 1e6

def cell(v, width, fmt='.2f'): return f"{v:>{width}{fmt}}" if v else f"{'-':>{width}}"

def goal_lines(rows, peer, a):
    "The goals, met or not, from the measured single networks."
    single = {k: r for k, r in rows.items() if k in SINGLE}
    if not single: return ["goals: no single network measured (see --only)"]
    slow = [f"{k} {r['s']:.2f} s" for k, r in single.items() if r['s'] > GOAL_S]
    few = [f"{k} {peer['s'] / r['s']:.2f}x" for k, r in single.items() if peer['s'] / r['s'] < GOAL_RATIO]
    where = f"{a.size} x {a.size} x {a.depth}, {a.device}, {a.threads} threads"
    if (a.size, a.depth, a.device, a.threads) != (240, 48, 'cpu', 2):
        where += "; the goals are for 240 x 240 x 48 on 2 CPU cores: indicative only"
    return [f"goal <= {GOAL_S:g} s per volume for every single network ({', '.join(single)}) on 2 cores: "
            + (f"NOT MET ({', '.join(slow)})" if slow else "met") + f" [{where}]",
            f"goal >= {GOAL_RATIO:g}x faster than the MONAI path ({peer['s']:.2f} s): "
            + (f"NOT MET ({', '.join(few)})" if few else "met")]

def forward_gflop(model, subject, batch_size):
    "GFLOP of the network's passes over one volume as `predict_subject` runs them (convolutions, matrix products)."
    with FlopCounterMode(display=False) as fc: predict_subject(model, subject, batch_size=batch_size)
    return fc.get_total_flops() / 1e9

def floor_lines(gflop, gemm, what, device):
    "Per single network: its FLOPs per volume, and the seconds they take at the GEMM rate."
    if not gflop: return []
    return [f"FLOPs per volume and the time they take at the {what} rate measured in this run ({gemm:.0f} GFLOP/s), "
            + ("about the fastest that convolutions run here (MONAI's VNet trains at 95-104% of it in bench_models.py)"
               if device == 'cpu' else 'a reference, not a bound') + ': '
            + ', '.join(f"{k} {g:.0f} GFLOP -> {g / gemm:.2f} s" for k, g in gflop.items())]

def brainseg_path(model, subject, batch_size, spent, grids):
    "`predict_subject`, as users call it, with the time of its steps added to `spent`."
    with timed_parts(spent, grids): return predict_subject(model, subject, batch_size=batch_size)

def table(rows, peer):
    print(f"{'model':<34}{'params M':>9}{'grid Z x Y x X':>16}{'s/volume':>10}{'CPU s':>7}{'preprocess':>11}"
          f"{'resample':>9}{'network':>9}{'rest':>7}{'MONAI path / this':>19}")
    for name, r in rows.items():
        rest = r['s'] - sum(r.get(k, 0.0) for k in PARTS)
        grid = 'x'.join(map(str, r['grids'][0])) if r['grids'] else '-'
        print(f"{name:<34}{r['params']:>9.2f}{grid:>16}{r['s']:>10.2f}{r['cpu']:>7.1f}{cell(r.get('preprocess'), 11)}"
              f"{cell(r.get('resample'), 9)}{cell(r.get('network'), 9)}{rest:>7.2f}{peer['s'] / r['s']:>18.2f}x")

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--size', type=int, default=240, help='in-plane voxels (X = Y) of the phantom')
    p.add_argument('--depth', type=int, default=48, help='slices (Z) of the phantom')
    p.add_argument('--threads', type=int, default=2, help='torch threads')
    p.add_argument('--repeats', type=int, default=3, help='timed calls per model (median), after one warm-up')
    p.add_argument('--batch-size', type=int, default=8,
                   help="slices, slabs or volumes per forward pass (brainseg's batch_size, MONAI's sw_batch_size)")
    p.add_argument('--only', nargs='*', default=MODELS, choices=MODELS, help='brainseg models to time')
    p.add_argument('--windows', nargs='+', default=list(WINDOWS), choices=WINDOWS,
                   help="MONAI's ways over the slices to time (the faster is the MONAI path)")
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    a = p.parse_args()
    if a.repeats < 1 or a.batch_size < 1: p.error("--repeats and --batch-size must be >= 1")
    torch.set_num_threads(a.threads)
    gemm, gemm_what = gemm_gflops(a.device)
    t0 = time.perf_counter()
    phantom = make_phantom(0, shape=(a.size, a.size, a.depth))
    subject = Subject(phantom.id, phantom.images, phantom.affine)  # images only, as a user's scan
    print(f"{subject} (made in {time.perf_counter() - t0:.1f} s); device {a.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
          f"batch {a.batch_size}; median of {a.repeats} after 1 warm-up, models taking turns")
    runs, params, made, first, gflop = {}, {}, [], {}, {}
    with torch.inference_mode():
        net = monai_unet().to(a.device)
        net(torch.zeros(a.batch_size, 3, a.size, a.size, device=a.device))  # its first call sets up its kernels
        for windows in a.windows:  # warm-up calls, timed: the faster windowing also runs on brainseg's preprocessing
            name = f"monai_unet {windows}"
            runs[name], params[name] = partial(monai_path, net, subject, windows, a.batch_size, a.device), n_params(net)
            t0 = time.perf_counter(); runs[name]({}, []); first[windows] = time.perf_counter() - t0
        windows = min(first, key=first.get)
        name = f"monai_unet {windows}, brainseg prep"
        runs[name] = partial(monai_on_brainseg_prep, net, subject, windows, a.batch_size, a.device)
        params[name] = n_params(net)
        runs[name]({}, [])
        for name in a.only:
            model, how = build(name)
            model = model.to(a.device)
            runs[name], params[name] = partial(brainseg_path, model, subject, a.batch_size), n_params(model)
            made.append(f"{name}: {how}")
            runs[name]({}, [])
            if name in SINGLE: gflop[name] = forward_gflop(model, subject, a.batch_size)
        rows = timed_rounds(runs, a.repeats)
    for name, r in rows.items(): r['params'] = params[name]
    peer_name = min((f"monai_unet {w}" for w in a.windows), key=lambda k: rows[k]['s'])
    peer = rows[peer_name]
    print('models: ' + '; '.join(made) + '\n')
    table(rows, peer)
    chosen = f"the faster of {' and '.join(a.windows)}" if len(a.windows) > 1 else "the only windowing timed"
    print(f"\nMONAI path: {peer_name} ({chosen}); 'slices': a (Z, 3, X, Y) batch with roi (X, Y); 'roi3d': "
          "(1, 3, X, Y, Z) with roi (X, Y, 1) through a squeezing wrapper. The run on brainseg's "
          f"preprocessing uses {windows!r}, the faster warm-up call "
          f"({', '.join(f'{w} {s:.2f} s' for w, s in first.items())})")
    print("CPU s: CPU seconds of all the process's threads per volume (a loaded machine stretches s/volume, not "
          "this); preprocess: z-score per modality (brainseg also crops to the head's box + 8 voxels, padded to 16); "
          "resample: to the model's grid and back; network: the network over the volume (brainseg: predict_volume, "
          "the argmax included for single networks, the softmax for the cascade's stages and pretrained; MONAI: "
          "sliding_window_inference); rest: stacking, argmax (MONAI, cascade, pretrained), crop back, cascade merge")
    if 'cascade' in rows:
        print("cascade stage grids (Z x Y x X): " + ', '.join('x'.join(map(str, g)) for g in rows['cascade']['grids']))
    mine = rows[f"monai_unet {windows}, brainseg prep"]
    print(f"\nMONAI's network on brainseg's preprocessing: {peer['s'] / mine['s']:.2f}x faster than the MONAI path "
          f"(network {peer['network']:.2f} s on the whole grid -> {mine['network']:.2f} s on the head's box)")
    if 'unet' in rows:
        print(f"brainseg UNet's network / MONAI UNet's network on the same box: "
              f"{mine['network'] / rows['unet']['network']:.2f}x faster "
              f"({rows['unet']['network']:.2f} s vs {mine['network']:.2f} s)")
    for line in floor_lines(gflop, gemm, gemm_what, a.device) + goal_lines(rows, peer, a): print(line)

if __name__ == '__main__': main()
