"""The batched torch transforms against the per-sample numpy / scipy ones they replaced (`legacy_data.py`), for the
same settings: distributions of what they produce, side by side. Writes a figure (the notebook `04b_randomize` shows
it) and prints the figures it draws: per transform, the Kolmogorov-Smirnov distance between the old and new
distributions of foreground intensities (pooled over samples), of each sample's mean, and of the mean of one
structure; for comparison, the same distance between two halves of the old samples (sampling noise alone).

    python bench/compare_transforms.py [--n 96] [--out nbs/images/transforms_old_new.png]
"""
import argparse
import numpy as np
import torch
from scipy import stats
import legacy_data

STRUCTURES = ('G', 'WM', 'V')


def samples(n: int, seed: int = 0):
    "`n` slices of template subjects: percentile and z-score normalized images, and training targets."
    from brainseg.template import template_subjects
    from brainseg.data import preprocess
    from brainseg.samples import SliceDataset
    subjects = template_subjects(4, seed, shape=(120, 120, 48), modalities=['T1'])
    out = {}
    for norm in ('percentile', 'zscore'):
        ds = SliceDataset([preprocess(s, normalize=norm) for s in subjects])
        idx = np.random.default_rng(seed).choice([i for i in range(len(ds)) if ds.presence[i].sum() >= 4], n)
        b = ds.batch(idx.tolist())
        out[norm] = (b['image'], b['target'])
    return out


def run_both(name: str, image: torch.Tensor, target: torch.Tensor, seed: int = 0) -> tuple:
    "Old (per sample, numpy generators) and new (one batch, a torch generator) outputs of a transform's defaults."
    from brainseg.transforms import make_transform
    import brainseg.randomize  # noqa: F401 (registers 'randomize')
    old_t = {'standard': legacy_data.Augment(), 'randomize': legacy_data.Randomize()}[name]
    old = [old_t(image[i][:, None].numpy(), target[i][None].numpy().astype(np.uint8), np.random.default_rng((seed, i)))
           for i in range(len(image))]
    old_img = np.stack([o[0][:, 0] for o in old]); old_tgt = np.stack([o[1][0] for o in old])
    new_img, new_tgt = make_transform(name)(image, target, torch.Generator().manual_seed(seed))
    return (old_img, old_tgt), (new_img.numpy(), new_tgt.numpy())


def features(img: np.ndarray, tgt: np.ndarray) -> dict:
    "Distributions to compare: foreground intensities, per-sample means, per-sample mean of each structure."
    from brainseg.labels import label
    fg = img[:, 0][tgt != 255]
    out = {'foreground voxels': fg[fg != 0], 'sample means': img[:, 0].reshape(len(img), -1).mean(1)}
    for code in STRUCTURES:
        m = [im[0][t == label(code).id].mean() for im, t in zip(img, tgt) if (t == label(code).id).any()]
        out[f'{code} mean per sample'] = np.array(m)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--n', type=int, default=96, help='slices per transform')
    p.add_argument('--out', default='nbs/images/transforms_old_new.png', help='the figure to write')
    a = p.parse_args(argv)
    torch.set_num_threads(2)
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    data = samples(a.n)
    rows = {'standard': data['zscore'], 'randomize': data['percentile']}
    keys = ['foreground voxels', 'sample means'] + [f'{c} mean per sample' for c in STRUCTURES]
    fig, axes = plt.subplots(len(rows), len(keys) + 2, figsize=(3.0 * (len(keys) + 2), 2.9 * len(rows)))
    print(f"Kolmogorov-Smirnov distance, old vs new ({a.n} slices each; noise: old half vs old half)")
    print("| transform | distribution | old vs new | noise |\n| --- | --- | --- | --- |")
    for r, (name, (image, target)) in enumerate(rows.items()):
        (oi, ot), (ni, nt) = run_both(name, image, target)
        fo, fn = features(oi, ot), features(ni, nt)
        for c, key in enumerate(keys):
            ks = stats.ks_2samp(fo[key], fn[key]).statistic
            half = len(oi) // 2
            noise = stats.ks_2samp(features(oi[:half], ot[:half])[key], features(oi[half:], ot[half:])[key]).statistic
            print(f"| {name} | {key} | {ks:.3f} | {noise:.3f} |")
            ax = axes[r, c]
            lo, hi = np.percentile(np.concatenate([fo[key], fn[key]]), (0.5, 99.5))
            for vals, label_, colour in ((fo[key], 'numpy (before)', '#999999'),
                                         (fn[key], 'torch batch (now)', '#0072B2')):
                ax.hist(vals, bins=40, range=(lo, hi), density=True, histtype='step', lw=1.6, label=label_,
                        color=colour)
            ax.set_title(f"{name}: {key}\nKS {ks:.3f} (noise {noise:.3f})", fontsize=9)
            ax.tick_params(labelsize=7)
        axes[r, 0].legend(fontsize=7)
        for c, (img, who) in enumerate(((oi[0, 0], 'numpy'), (ni[0, 0], 'torch'))):
            ax = axes[r, len(keys) + c]
            ax.imshow(img, cmap='gray'); ax.set_title(f"{name}: a {who} sample", fontsize=9); ax.axis('off')
    fig.tight_layout()
    fig.savefig(a.out, dpi=72)
    print(f"figure: {a.out}")


if __name__ == '__main__':
    main()
