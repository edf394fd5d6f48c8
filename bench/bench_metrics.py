"""HD95 of brainseg.metrics against a straightforward per-point implementation, on MRBrainS18's 240 x 240 x 48 grid.

The reference does what the official MRBrainS18 script does: boundary by SciPy erosion with the 3 x 3 x 1 element,
one voxel -> physical point conversion per boundary voxel in a Python loop, a KD-tree each way. The prediction is
a phantom's label map with every structure dilated, eroded or kept (in-plane, 1-2 voxels) and shifted by up to
2 voxels per axis; the second case adds speckle (isolated voxels of random structures, far from their structure)
that the fast path has to send to its KD-tree fallback. Prints times, the speedup and the largest difference of
the HD95 values; asserts nothing.
    python bench/bench_metrics.py
    python bench/bench_metrics.py --repeat 5 --speckle 0.002
"""
import argparse, time
import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from brainseg.labels import SCORED, IGNORE
from brainseg.metrics import score_labels, hd95
from brainseg.phantom import make_phantom

PLANE = np.ones((3, 3, 1), bool)

def reference_hd95(truth, pred, affine):
    "Per-point HD95 (mm) of every scored label, ignore labels removed from both maps first."
    ignored = np.isin(truth, IGNORE)
    truth, pred = np.where(ignored, 0, truth), np.where(ignored, 0, pred)
    out = []
    for k in SCORED:
        t, p = truth == k, pred == k
        if not t.any() or not p.any(): out.append(np.nan); continue
        points = []
        for m in (t, p):
            edge = m & ~ndimage.binary_erosion(m, PLANE, border_value=1)
            points.append([tuple((affine @ np.array([i, j, k_, 1.0]))[:3]) for i, j, k_ in zip(*np.nonzero(edge))])
        a, b = points
        out.append(max(np.percentile(cKDTree(a).query(b)[0], 95), np.percentile(cKDTree(b).query(a)[0], 95)))
    return np.array(out)

def perturbed(labels, seed=0, speckle=0.0):
    "A noisy prediction: each structure dilated, eroded or kept, then shifted; optionally speckled."
    rng = np.random.default_rng(seed)
    pred = np.zeros_like(labels)
    for k in SCORED:
        m, n = labels == k, int(rng.integers(1, 3))
        op = rng.integers(3)
        if op == 0: m = ndimage.binary_dilation(m, PLANE, iterations=n)
        elif op == 1: m = ndimage.binary_erosion(m, PLANE, iterations=n)
        pred[np.roll(m, tuple(rng.integers(-2, 3, 3)), axis=(0, 1, 2))] = k
    if speckle:
        head = np.flatnonzero(labels > 0)
        spots = rng.choice(head, int(speckle * head.size), replace=False)
        pred.flat[spots] = rng.integers(1, 9, spots.size)
    return pred

def best(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter(); out = fn(); times.append(time.perf_counter() - t0)
    return min(times), out

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeat', type=int, default=3, help='timings are the best of this many runs')
    ap.add_argument('--speckle', type=float, default=0.005,
                    help='fraction of head voxels relabelled at random in case 2')
    args = ap.parse_args()
    sub = make_phantom(0, shape=(240, 240, 48))
    truth, affine = sub.labels, sub.affine
    print(f"{sub}; {args.repeat} runs, best time\n")
    print(f"{'prediction':<22} {'boundary vox':>12} {'reference s':>11} {'score_labels s':>14} {'speedup':>8} "
          f"{'hd95 x8 s':>9} {'speedup':>8} {'max |diff| mm':>13}")
    for name, pred in [('perturbed', perturbed(truth)),
                       (f'+ {args.speckle:.1%} speckle', perturbed(truth, speckle=args.speckle))]:
        ignored = np.isin(truth, IGNORE)
        t_, p_ = np.where(ignored, 0, truth), np.where(ignored, 0, pred)
        n_edge = sum(int((m & ~ndimage.binary_erosion(m, PLANE, border_value=1)).sum())
                     for k in SCORED for m in (t_ == k, p_ == k))
        t_ref, ref = best(lambda: reference_hd95(truth, pred, affine), args.repeat)
        t_fast, table = best(lambda: score_labels(truth, pred, affine), args.repeat)
        t_hd, only = best(lambda: np.array([hd95(t_ == k, p_ == k, affine) for k in SCORED]), args.repeat)
        fast = table.hd95_mm.to_numpy()
        assert np.array_equal(np.isnan(ref), np.isnan(fast)) and np.array_equal(np.isnan(ref), np.isnan(only))
        diff = max(np.nanmax(np.abs(fast - ref)), np.nanmax(np.abs(only - ref)))
        print(f"{name:<22} {n_edge:>12} {t_ref:>11.3f} {t_fast:>14.3f} {t_ref / t_fast:>7.1f}x "
              f"{t_hd:>9.3f} {t_ref / t_hd:>7.1f}x {diff:>13.2e}")
        print(f"{'':<22} HD95 mm: " + ' '.join(f"{c}={v:.3f}" for c, v in zip(table.code, fast)))
    print("\nscore_labels: Dice, HD95 and VS of all 8 structures from the two label maps (ignore labels removed);"
          "\nhd95 x8: the public hd95 on each structure's two masks (made in the timed call, as in the reference).")

if __name__ == '__main__': main()
