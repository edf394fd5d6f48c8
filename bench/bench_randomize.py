"""Domain randomization throughput: brainseg's `Randomize` on batches vs the same steps composed from TorchIO, and vs
brainseg's earlier per-sample numpy / scipy version (`legacy_data.py`), in one run.

Both synthesize a training sample from a template subject's label map (a Gaussian mixture per label), then blur,
lower the resolution, apply a bias field, gamma and Rician (TorchIO: Gaussian) noise. brainseg also splits each
label into intensity bands and varies the head (kept, partly removed, stripped); TorchIO's pipeline has no step
for those, so it does slightly less work. Figures: samples per second, median of `--repeats` timings of `--n`
samples each (brainseg: in batches of `--batch`), 2D slices (1, 120, 120) and 2.5D slabs (1, 19, 120, 120), one
process, torch threads as set; `--device cuda` runs brainseg's batches on the GPU (the others stay on the CPU).

Run: `python bench/bench_randomize.py [--n 200] [--repeats 5] [--threads 2] [--batch 8] [--device cpu]`
"""
from __future__ import annotations
import argparse, statistics, time
import numpy as np
import torch
import torchio as tio
from brainseg.data import preprocess, to_network_layout
from brainseg.labels import training_target
from brainseg.randomize import Randomize
from brainseg.template import make_template_subject
import legacy_data


def samples(depth: int) -> tuple:
    "A template subject's real T1 and target in the network layout: (1, Z, Y, X), (Z, Y, X)."
    p = preprocess(make_template_subject(0, shape=(120, 120, 48), modalities=['T1']), normalize='percentile')
    image, target = to_network_layout(p.image), to_network_layout(training_target(p.labels))
    z = image.shape[1] // 2 - depth // 2
    return np.ascontiguousarray(image[:, z:z + depth]), np.ascontiguousarray(target[z:z + depth])


def torchio_pipeline() -> tio.Transform:
    return tio.Compose([
        tio.RandomLabelsToImage(label_key='label', image_key='t1', default_mean=(0.0, 1.0),
                                default_std=(0.01, 0.06)),
        tio.RandomBlur(std=(0, 1)),
        tio.RandomAnisotropy(axes=(0, 1), downsampling=(1, 2.5)),
        tio.RandomBiasField(coefficients=0.3),
        tio.RandomGamma(log_gamma=0.25),
        tio.RandomNoise(std=(0, 0.05)),
        tio.RescaleIntensity(out_min_max=(0, 1), percentiles=(0, 99)),
    ])


def time_it(fn, n: int, repeats: int) -> float:
    "Median samples per second of `n` calls, over `repeats` timings."
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        for k in range(n): fn(k)
        rates.append(n / (time.perf_counter() - t))
    return statistics.median(rates)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--n', type=int, default=100, help='samples per timing')
    p.add_argument('--repeats', type=int, default=5, help='timings per figure (median)')
    p.add_argument('--threads', type=int, default=torch.get_num_threads(), help='torch threads')
    p.add_argument('--batch', type=int, default=8, help="samples per call of brainseg's batched Randomize")
    p.add_argument('--device', default='cpu', help="where brainseg's batches run: cpu, cuda")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for name, depth in (('slice 120x120', 1), ('slab 19x120x120', 19)):
        image, target = samples(depth)
        ours, old = Randomize(flip=0, rotate=0, zoom=(1, 1)), legacy_data.Randomize(spatial=None)
        images = torch.from_numpy(image)[None].repeat(args.batch, 1, 1, 1, 1).to(args.device)
        targets = torch.from_numpy(target.astype(np.int64))[None].repeat(args.batch, 1, 1, 1).to(args.device)
        sync = torch.cuda.synchronize if args.device.startswith('cuda') else (lambda: None)
        batch = lambda k: (ours(images, targets, torch.Generator(args.device).manual_seed(k)), sync())
        rate_ours = time_it(batch, max(1, args.n // args.batch), args.repeats) * args.batch
        rate_old = time_it(lambda k: old(image, target, np.random.default_rng(k)), args.n, args.repeats)
        labels = np.where(target == 255, 0, target).astype(np.int64)  # the ignore label as background
        # TorchIO holds (C, W, H, D): our (Z, Y, X) slab becomes (X, Y, Z)
        subject = tio.Subject(t1=tio.ScalarImage(tensor=torch.from_numpy(image.transpose(0, 3, 2, 1).copy())),
                              label=tio.LabelMap(tensor=torch.from_numpy(labels.transpose(2, 1, 0)[None])))
        pipe = torchio_pipeline()
        rate_tio = time_it(lambda k: (torch.manual_seed(k), pipe(subject)), args.n, args.repeats)
        rows.append((name, rate_ours, rate_tio, rate_old))
    print(f"torch {torch.__version__}, torchio {tio.__version__}, {args.threads} threads; samples/s, median of "
          f"{args.repeats} x {args.n}; brainseg in batches of {args.batch} on {args.device}")
    print("| sample | brainseg Randomize | TorchIO pipeline | brainseg / TorchIO | brainseg before (numpy) "
          "| now / before |\n| --- | --- | --- | --- | --- | --- |")
    for name, a, b, c in rows: print(f"| {name} | {a:.1f} | {b:.1f} | {a / b:.2f}x | {c:.1f} | {a / c:.2f}x |")
    return rows


if __name__ == '__main__':
    main()
