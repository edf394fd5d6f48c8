"""Real-brain check: models trained on the embedded (ICBM152) anatomy, scored on a brain they never saw.

The brain: Colin27 (the MNI single subject, "ch2": one person scanned 27 times and averaged; Holmes et al., JCAT
1998), with skull and scalp (`ch2.nii.gz`) and skull-stripped (`ch2bet.nii.gz`), from Debian's `mricron-data`
package (BSD-3). It is not derived from the ICBM152 template our training data come from. Its labels: the AAL
atlas (Tzourio-Mazoyer et al., NeuroImage 2002), drawn by hand on this very brain, in the same package.

How AAL maps to the MRBrainS18 structures (what `colin27_labels` does):
- B: AAL's caudate, putamen, pallidum and thalamus; C: AAL's cerebellum and vermis (hand-drawn structures).
- AAL's cortical regions are generous (in this release they reach deep into the white matter: 1230 ml of
  "cortex") and AAL has no white matter, CSF or ventricles. So the rest of the brain (Colin27's own brain mask,
  `ch2bet` filled) is classified by T1 into CSF, GM (G) and WM at the midpoints between the centres of a 3-class
  k-means: a tissue classification of this brain, as brainseg's template labels split CerebrA's unlabelled tissue
  by T1. Clearly dark components deep in the brain (below the CSF/GM threshold by half the GM/WM gap, more than
  5 mm from the brain's surface, at least 1 ml) and their 2 mm rim of CSF-dark voxels are the ventricles (V);
  the other dark voxels are extracerebral CSF. G, WM and V are thus a silver
  standard (intensity-derived), B and C hand-drawn.
- AAL has no brain stem: unlabelled brain voxels below the thalami and near the midline (|x| < 25 mm, -50 < y < 0
  mm, MNI) get label 10 ("other"), which MRBrainS18 scoring removes from both images. BS is therefore not scored
  here, and the mean reported is of G, B, WM, V, C (5 of the 6 structures of the issue's mean).
- No lesions (L). CSF is scored but left out of the mean, as in the issue's mean.

The first row, "ceiling", scores the true labels taken to the models' grid (1.92 x 1.92 x 3 mm, linear on one-hot
maps) and back to 1 mm: what a perfect model at that grid could reach against these 1 mm labels.

Usage: `python bench/bench_real_brains.py --models pretrained:t1 runs/pretrained/t1_plain-*/model/last.pt`
The Debian package is read from /usr/share/mricron/templates when installed, else downloaded once with
`apt-get download mricron-data` (no root needed) and unpacked into `$BRAINSEG_CACHE/mricron-data`.
"""
from __future__ import annotations
import argparse, subprocess, tempfile, time
from pathlib import Path
import numpy as np
import nibabel as nib
import pandas as pd
import torch
from scipy import ndimage
from brainseg.io import Subject, load_subject
from brainseg.labels import label
from brainseg.template import cache_folder
from brainseg.metrics import score_subject
from brainseg.infer import load_predictor, predict_subject, model_grid, resample
from brainseg.data import subjects_from
from brainseg.experiments import pretrained_path

SYSTEM = Path('/usr/share/mricron/templates')
FILES = ('ch2.nii.gz', 'ch2bet.nii.gz', 'aal.nii.gz', 'aal.nii.txt')
MEAN_OF = ('G', 'B', 'WM', 'V', 'C')  # BS is not labelled in AAL: see the module's docstring


def mricron_templates() -> Path:
    "The folder holding Colin27 and AAL: the installed package's, or the .deb unpacked in the cache."
    if all((SYSTEM / f).is_file() for f in FILES): return SYSTEM
    folder = cache_folder() / 'mricron-data'
    found = folder / 'usr/share/mricron/templates'
    if all((found / f).is_file() for f in FILES): return found
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        subprocess.run(['apt-get', 'download', 'mricron-data'], cwd=tmp, check=True, capture_output=True)
        deb = next(Path(tmp).glob('mricron-data_*.deb'))
        subprocess.run(['dpkg-deb', '-x', str(deb), str(folder)], check=True)
    return found


def tissue_thresholds(values: np.ndarray, iterations: int = 50) -> tuple:
    "CSF/GM and GM/WM intensity thresholds: midpoints between the centres of a 3-class 1D k-means."
    centres = np.percentile(values, [10, 50, 90]).astype(float)
    for _ in range(iterations):
        cls = np.searchsorted((centres[:-1] + centres[1:]) / 2, values)
        centres = np.array([values[cls == k].mean() for k in range(3)])
    return tuple((centres[:-1] + centres[1:]) / 2)


def colin27_labels(folder: Path) -> np.ndarray:
    "MRBrainS18 label map of Colin27 from AAL and T1 (X, Y, Z, RAS+ 1 mm), as the module docstring says."
    t1, bet, aal = (np.asanyarray(nib.load(folder / f).dataobj).astype(np.float32) for f in FILES[:3])
    affine = nib.load(folder / 'ch2.nii.gz').affine
    names = dict(line.split()[:2] for line in (folder / 'aal.nii.txt').read_text().split('\n') if line.strip())
    lut = np.zeros(256, np.uint8)
    for idx, name in names.items():
        code = 'B' if name.split('_')[0] in ('Caudate', 'Putamen', 'Pallidum', 'Thalamus') else \
               'C' if name.startswith(('Cerebelum', 'Vermis')) else 'G'
        lut[int(idx)] = label(code).id
    aal_codes = lut[aal.astype(np.uint8)]
    brain = ndimage.binary_fill_holes(bet > 0) | (aal_codes > 0)
    labels = np.where(np.isin(aal_codes, [label('B').id, label('C').id]), aal_codes, 0).astype(np.uint8)
    cerebrum = brain & (labels == 0)  # tissue classes by T1: CSF, GM, WM
    csf_gm, gm_wm = tissue_thresholds(t1[cerebrum])
    labels[cerebrum] = np.where(t1[cerebrum] >= gm_wm, label('WM').id,
                                np.where(t1[cerebrum] >= csf_gm, label('G').id, label('CSF').id))
    dark = cerebrum & (t1 < csf_gm)
    clear_csf = t1 < csf_gm - (gm_wm - csf_gm) / 2  # far from partial volume with GM
    deep = cerebrum & clear_csf & (ndimage.distance_transform_edt(brain) > 5)
    comps, n = ndimage.label(deep)
    sizes = ndimage.sum(deep, comps, range(1, n + 1))
    ventricles = np.isin(comps, 1 + np.flatnonzero(sizes >= 1000))
    labels[ndimage.binary_dilation(ventricles, iterations=2) & dark] = label('V').id  # with their rim
    x, y, z = np.meshgrid(*[np.arange(n) for n in labels.shape], indexing='ij')
    mni = nib.affines.apply_affine(affine, np.stack([x, y, z], -1))
    thalamus_floor = mni[..., 2][np.isin(aal, [77, 78])].min()
    stem = cerebrum & (mni[..., 2] < thalamus_floor) & (np.abs(mni[..., 0]) < 25) & \
        (mni[..., 1] > -50) & (mni[..., 1] < 0)
    labels[stem] = 10
    return labels


def colin27_subjects() -> list:
    "Colin27 with skull and scalp, and skull-stripped, each with the AAL-derived label map."
    folder = mricron_templates()
    labels = colin27_labels(folder)
    out = []
    for id, f in (('colin27-head', 'ch2.nii.gz'), ('colin27-stripped', 'ch2bet.nii.gz')):
        s = load_subject({'T1': folder / f}, id=id)
        out.append(Subject(id, s.images, s.affine, labels=labels, paths=s.paths, header=s.header,
                           disk_ornt=s.disk_ornt))
    return out


def model_label(name: str) -> str:
    "A short name: a shipped model's own, else a grid run's configuration (`<run>/model/last.pt`), else the file."
    path = Path(name)
    if not path.is_file(): return name
    return path.parent.parent.name.split('-')[0] if path.parent.name == 'model' else path.stem


def score(model_name: str, subjects: list) -> pd.DataFrame:
    "Official scores of one model on the subjects it has the modalities for, with the seconds each prediction took."
    model, modalities = load_predictor(pretrained_path(model_name))
    rows = []
    for s in subjects:
        if not set(modalities) <= set(s.modalities): continue
        t = time.perf_counter()
        pred = predict_subject(model, s, modalities)
        seconds = time.perf_counter() - t
        rows.append(score_subject(s, pred).assign(model=model_label(model_name), seconds=round(seconds, 1)))
    return pd.concat(rows, ignore_index=True)


def resolution_ceiling(subject: Subject, spacing=(1.916, 1.916, 3.0)) -> pd.DataFrame:
    "Scores of the true labels taken to a model's grid (linear on one-hot maps) and back: the best that grid allows."
    affine, shape = model_grid(subject, spacing)
    onehot = np.stack([(subject.labels == k).astype(np.float32) for k in range(int(subject.labels.max()) + 1)])
    there = resample(onehot, subject.affine, affine, shape)
    back = resample(there, affine, subject.affine, subject.shape, mode='nearest').argmax(0).astype(np.uint8)
    return score_subject(subject, back).assign(model='ceiling 1.92x1.92x3 mm', seconds=0.0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--models', nargs='+', required=True, help="shipped names (pretrained:t1) or model files")
    p.add_argument('--template', action='store_true',
                   help='also score the held-out template subjects template10, template11 (120x120x48, 3 modalities)')
    p.add_argument('--out', help='folder to write real_brains.csv (long table) and real_brains.md into')
    args = p.parse_args(argv)
    subjects = colin27_subjects()
    if args.template:
        subjects += [s for s in subjects_from('template:12', '120x120x48', 0, ['T1', 'IR', 'FLAIR'])
                     if s.id in ('template10', 'template11')]
    table = pd.concat([resolution_ceiling(subjects[0])] + [score(m, subjects) for m in args.models], ignore_index=True)
    wide = table.pivot_table(index=['model', 'subject'], columns='code', values='dice', sort=False)
    wide['mean G B WM V C'] = wide[list(MEAN_OF)].mean(axis=1)
    wide['mean G B WM V C BS'] = wide[list(MEAN_OF) + ['BS']].mean(axis=1)
    colin = wide.index.get_level_values('subject').str.startswith('colin27')
    wide.loc[colin, ['BS', 'mean G B WM V C BS']] = np.nan  # no brain stem in AAL: not scored
    report = (f"Dice per structure (official MRBrainS18 scoring). Colin27: AAL-derived labels, BS not labelled "
              f"(see bench/bench_real_brains.py); template: held-out template10, template11. "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads.\n\n"
              + wide.drop(columns=['L'], errors='ignore').round(3).to_markdown() + '\n')
    print(report)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        table.to_csv(Path(args.out) / 'real_brains.csv', index=False)
        (Path(args.out) / 'real_brains.md').write_text(report)
    return wide


if __name__ == '__main__':
    main()
