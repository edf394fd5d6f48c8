"MRBrainS18 scoring: known values by hand, the fast HD95 against a per-point reference, folders on disk, MONAI."
import warnings
import numpy as np
import nibabel as nib
import pandas as pd
import pytest
from scipy import ndimage
from scipy.spatial import KDTree
from brainseg.io import SubjectError, load_subject, read_mrbrains_subject, save_labels, save_nifti
from brainseg.labels import SCORED
from brainseg.metrics import (METRICS, boundary, dice, volume_similarity, hd95, score_labels, score_subject,
                              slice_axis_of, evaluate_folders, summarize, metric_table, write_csv, write_markdown)
from brainseg.phantom import make_phantom, write_phantom_dataset

MR = np.diag([0.958, 0.958, 3.0, 1.0])  # MRBrainS18 voxel size

def per_point_hd95(truth, pred, affine, slice_axis=2):
    """The official script's HD95, point by point: erosion in-plane (outside = foreground), voxel -> world one at a
    time, KD-tree."""
    element = np.ones([1 if ax == slice_axis else 3 for ax in range(3)], bool)
    points = []
    for m in (np.asarray(truth, bool), np.asarray(pred, bool)):
        edge = m & ~ndimage.binary_erosion(m, element, border_value=1)
        points.append([tuple((affine @ np.array([i, j, k, 1.0]))[:3]) for i, j, k in zip(*np.nonzero(edge))])
    a, b = points
    return max(np.percentile(KDTree(a, leafsize=100).query(b)[0], 95),
               np.percentile(KDTree(b, leafsize=100).query(a)[0], 95))

def mask(shape, *boxes):
    m = np.zeros(shape, bool)
    for b in boxes: m[b] = True
    return m

def blob(seed, shape=(30, 28, 10), level=0.5):
    return ndimage.gaussian_filter(np.random.default_rng(seed).random(shape), 2) > level

def rotation(theta, axis):
    c, s = np.cos(theta), np.sin(theta)
    r = np.eye(4); i, j = [a for a in range(3) if a != axis]
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r

AFFINES = {
    'diagonal': MR,
    'flipped LPS + origin': np.diag([-1, -1, 1, 1]) @ MR + np.array([[0, 0, 0, 120], [0, 0, 0, -80], [0, 0, 0, 33],
                                                                     [0, 0, 0, 0]]),
    'permuted axes': MR[[2, 0, 1, 3]],
    'rotated': rotation(0.5, 2) @ rotation(-0.3, 0) @ MR,
    'rotated + sheared': rotation(0.2, 1) @ np.array([[1, 0.15, 0, 0], [0, 1, 0.1, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
                         @ MR,
}

# ---------------------------------------------------------------- known values by hand

def test_dice_and_vs_by_hand():
    a = mask((4, 4, 2), np.s_[0, :, 0])              # 4 voxels
    b = mask((4, 4, 2), np.s_[0, :3, 0], np.s_[3, :3, 1])  # 6 voxels, 3 shared
    assert dice(a, b) == pytest.approx(6 / 10) and volume_similarity(a, b) == pytest.approx(1 - 2 / 10)
    assert dice(a, a) == 1 and volume_similarity(a, a) == 1
    moved = np.roll(a, 1, axis=0)  # same volume, no overlap
    assert volume_similarity(a, moved) == 1 and dice(a, moved) == 0

def test_empty_masks_are_missing_not_zero_or_one():
    e, a = np.zeros((5, 5, 3), bool), mask((5, 5, 3), np.s_[1:3, 1:3, 1])
    assert np.isnan(dice(e, e)) and np.isnan(volume_similarity(e, e)) and np.isnan(hd95(e, e, MR))
    assert dice(a, e) == 0 and volume_similarity(a, e) == 0 and np.isnan(hd95(a, e, MR)) and np.isnan(hd95(e, a, MR))
    full = np.ones((5, 5, 3), bool)  # no boundary anywhere: HD95 undefined (the official script would fail)
    assert np.isnan(hd95(full, full, MR))

@pytest.mark.parametrize('n', [1, 2, 5])
def test_hd95_through_plane_shift_is_n_slices(n):
    a = mask((9, 9, 8), np.s_[4, 4, 1])
    assert hd95(a, np.roll(a, n, axis=2), MR) == pytest.approx(3.0 * n, abs=1e-12)
    plate = mask((12, 12, 8), np.s_[2:9, 3:7, 1])  # one slice thick: every ring voxel is n slices from the other ring
    assert hd95(plate, np.roll(plate, n, axis=2), MR) == pytest.approx(3.0 * n, abs=1e-12)

@pytest.mark.parametrize('n', [1, 3, 9])
def test_hd95_in_plane_shift_is_n_voxels(n):
    a = mask((24, 9, 4), np.s_[2, 4, 1])
    assert hd95(a, np.roll(a, n, axis=0), MR) == pytest.approx(0.958 * n, abs=1e-12)
    assert hd95(a, np.roll(np.roll(a, n, axis=0), 1, axis=2), MR) == pytest.approx(np.hypot(0.958 * n, 3.0), abs=1e-12)

def test_hd95_thick_block_shift_by_one_slice():
    "Rings of 4 slices, shifted by 1: 1/4 of each side's rings is 3 mm away, the rest 0; the 95th percentile is 3 mm."
    blk = mask((10, 10, 8), np.s_[2:7, 2:8, 1:5])
    assert hd95(blk, np.roll(blk, 1, axis=2), MR) == pytest.approx(3.0, abs=1e-12)
    b = boundary(blk)
    assert [int(b[..., z].sum()) for z in range(1, 5)] == [18] * 4  # caps not boundary: 5 x 6 rings only

def test_hd95_percentile_interpolates_linearly():
    "{0} one way, {0, 9 mm} the other: the 95th percentile of two values is 0.95 x 9 mm."
    a = mask((9, 9, 8), np.s_[4, 4, 1])
    assert hd95(a, a | mask((9, 9, 8), np.s_[4, 4, 4]), MR) == pytest.approx(0.95 * 9.0, abs=1e-12)

def test_boundary_matches_erosion_and_keeps_image_edges():
    rng = np.random.default_rng(1)
    for axis in range(3):
        element = np.ones([1 if ax == axis else 3 for ax in range(3)], bool)
        for _ in range(4):
            m = ndimage.binary_opening(rng.random((17, 14, 9)) < 0.6)
            np.testing.assert_array_equal(boundary(m, axis), m & ~ndimage.binary_erosion(m, element, border_value=1))
    edge = mask((6, 6, 2), np.s_[:3])  # touches x=0, y=0, y=5: only the inner column x=2 is boundary
    assert set(np.argwhere(boundary(edge))[:, 0]) == {2}

def test_ignore_labels_removed_from_both():
    truth = np.zeros((8, 8, 3), np.uint8); truth[1:4, 1:4, 1] = 1; truth[1, 1, 1] = 9
    truth[5:7, 5:7, 1] = 2; truth[6, 6, 1] = 10
    pred = np.zeros_like(truth); pred[1:4, 1:4, 1] = 1; pred[5:7, 5:7, 1] = 2
    t = score_labels(truth, pred, MR).set_index('code')
    assert t.loc['G', 'dice'] == 1 and t.loc['G', 'vs'] == 1
    assert t.loc['G', 'hd95_mm'] == 0 and t.loc['G', 'truth_voxels'] == 8
    assert t.loc['B', 'dice'] == 1 and t.loc['B', 'pred_voxels'] == 3
    # a prediction of 9 or 10 is not a structure: it is a miss where the truth has one
    pred2 = pred.copy(); pred2[2, 2, 1] = 9
    assert score_labels(truth, pred2, MR).set_index('code').loc['G', 'dice'] == pytest.approx(2 * 7 / 15)
    assert t.loc[['WM', 'L', 'CSF', 'V', 'C', 'BS'], list(METRICS)].isna().all().all()

def test_score_labels_errors_name_the_subject():
    t = np.zeros((4, 4, 2), np.uint8)
    with pytest.raises(SubjectError, match=r"Subject '3': expected two 3D label maps of one shape, "
                                           r"found ground truth \(4, 4, 2\) and prediction \(4, 4, 3\)"):
        score_labels(t, np.zeros((4, 4, 3), np.uint8), MR, subject='3')
    with pytest.raises(SubjectError, match=r"Subject '3': prediction: label values must lie in 0..10, found \[12\]"):
        score_labels(t, t + 12, MR, subject='3')
    with pytest.raises(ValueError, match='singular'):
        score_labels(t, t, np.diag([1, 0, 1, 1]))
    with pytest.raises(ValueError, match='slice_axis must be 0, 1 or 2'):
        score_labels(t, t, MR, slice_axis=-1)

# ---------------------------------------------------------------- the fast path equals the per-point reference

@pytest.mark.parametrize('name', list(AFFINES))
def test_hd95_equals_per_point_reference(name):
    affine = AFFINES[name]
    speckled = blob(1) | (np.random.default_rng(9).random((30, 28, 10)) < 0.003)
    cases = [(blob(1), blob(2)),  # overlapping, mostly near
             (blob(1), speckled),  # a few far voxels: the search stops before them
             (blob(3), np.roll(blob(3), 9, axis=0)),  # far apart: KD-tree fallback
             (blob(4, level=0.49), blob(5, level=0.51))]
    for t, p in cases:
        for axis in (2, 0):
            assert hd95(t, p, affine, axis) == pytest.approx(per_point_hd95(t, p, affine, axis), abs=1e-9)

def perturbed(labels, seed):
    rng, plane = np.random.default_rng(seed), np.ones((3, 3, 1), bool)
    out = np.zeros_like(labels)
    for k in SCORED:
        m = labels == k
        change = [lambda x: ndimage.binary_dilation(x, plane), lambda x: ndimage.binary_erosion(x, plane), lambda x: x]
        m = change[rng.integers(3)](m)
        out[np.roll(m, tuple(rng.integers(-2, 3, 3)), axis=(0, 1, 2))] = k
    speckle = rng.random(labels.shape) < 0.002
    out[speckle] = rng.integers(1, 11, int(speckle.sum()))
    return out

@pytest.mark.parametrize('name', ['diagonal', 'rotated + sheared'])
def test_score_labels_equals_per_structure_reference(name):
    ph = make_phantom(3, (48, 44, 12))
    truth, pred, affine = ph.labels, perturbed(ph.labels, 3), AFFINES[name]
    table = score_labels(truth, pred, affine, subject='p')
    keep = ~np.isin(truth, (9, 10))
    for k, row in zip(SCORED, table.itertuples()):
        t, p = (truth == k) & keep, (pred == k) & keep
        assert row.dice == pytest.approx(dice(t, p), nan_ok=True)
        assert row.vs == pytest.approx(volume_similarity(t, p), nan_ok=True)
        assert (row.truth_voxels, row.pred_voxels) == (t.sum(), p.sum())
        if t.any() and p.any(): assert row.hd95_mm == pytest.approx(per_point_hd95(t, p, affine), abs=1e-9)
        else: assert np.isnan(row.hd95_mm)

# ---------------------------------------------------------------- an independent implementation: MONAI

def one_hot(labels, n=9):
    import torch
    return torch.nn.functional.one_hot(torch.as_tensor(labels, dtype=torch.long), n).permute(3, 0, 1, 2)[None].float()

def test_dice_matches_monai():
    import monai.metrics as metrics  # a dev requirement: its absence fails `make test`
    ph = make_phantom(4, (40, 40, 10))
    truth = np.where(np.isin(ph.labels, (9, 10)), 0, ph.labels)
    pred = perturbed(truth, 4); pred[pred > 8] = 0
    ours = score_labels(truth, pred, MR).dice.to_numpy()
    theirs = metrics.compute_dice(one_hot(pred), one_hot(truth), include_background=False)[0].numpy()
    # MONAI leaves classes absent from the truth out (NaN); so do we when both are empty
    present = np.isin(np.arange(1, 9), truth)
    np.testing.assert_allclose(ours[present], theirs[present], rtol=1e-6)

@pytest.mark.filterwarnings('ignore::FutureWarning')  # MONAI's own deprecation notice
def test_hd95_matches_monai_where_boundaries_coincide():
    """Isolated voxels are their own boundary under both definitions (in-plane 3x3 here, MONAI's 3D erosion),
    so HD95 must agree."""
    import monai.metrics as metrics  # a dev requirement: its absence fails `make test`
    rng = np.random.default_rng(5)
    for _ in range(3):
        labels = []
        for _ in range(2):  # sparse voxels on a lattice of step 2: no two are neighbours
            lab = np.zeros((40, 36, 12), np.uint8)
            sub = lab[::2, ::2, ::2]
            sub[...] = np.where(rng.random(sub.shape) < 0.05, rng.integers(1, 3, sub.shape), 0)
            labels.append(lab)
        truth, pred = labels
        ours = score_labels(truth, pred, MR).hd95_mm.to_numpy()[:2]
        theirs = metrics.compute_hausdorff_distance(one_hot(pred, 3), one_hot(truth, 3), include_background=False,
                                                    percentile=95, spacing=[0.958, 0.958, 3.0])[0].numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-5)

# ---------------------------------------------------------------- folders on disk

@pytest.fixture
def release(tmp_path):
    "Three phantom subjects in the MRBrainS18 layout, with `result.nii.gz` predictions (subject '1' perfect)."
    truth_root, pred_root = tmp_path / 'training', tmp_path / 'results'
    subjects = {}
    for folder in write_phantom_dataset(truth_root, n=3, shape=(32, 30, 8)):
        s = read_mrbrains_subject(folder)
        pred = s.labels if s.id == '1' else perturbed(s.labels, int(s.id))
        save_labels(pred, pred_root / s.id / 'result.nii.gz', s)
        subjects[s.id] = (s, pred)
    return truth_root, pred_root, subjects

def test_evaluate_folders_round_trip(release, tmp_path):
    truth_root, pred_root, subjects = release
    scores = evaluate_folders(truth_root, pred_root)
    assert list(scores.columns) == ['subject', 'label', 'code', 'dice', 'hd95_mm', 'vs', 'truth_voxels', 'pred_voxels']
    assert scores.subject.unique().tolist() == ['1', '4', '5'] and len(scores) == 3 * 8
    for id, (s, pred) in subjects.items():
        pd.testing.assert_frame_equal(scores[scores.subject == id].reset_index(drop=True), score_subject(s, pred))
    perfect = scores[scores.subject == '1']
    assert (perfect.dice == 1).all() and (perfect.vs == 1).all() and (perfect.hd95_mm == 0).all()
    summary = summarize(scores)
    assert list(summary.index) == ['G', 'B', 'WM', 'L', 'CSF', 'V', 'C', 'BS', 'mean'] and (summary.subjects == 3).all()
    table = metric_table(scores, 'hd95_mm')
    assert table.shape == (4, 9) and table.loc['mean', 'G'] == pytest.approx(scores[scores.code == 'G'].hd95_mm.mean())
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # subjects chosen by `ids`: the other predictions are not reported
        assert evaluate_folders(truth_root, pred_root, ids=['5']).subject.unique().tolist() == ['5']
    # writers: complete files, no temporary leftovers
    out = tmp_path / 'report'
    write_csv(scores, out / 'scores.csv'); write_csv(summary, out / 'summary.csv')
    write_markdown(summary, out / 'summary.md')
    assert sorted(p.name for p in out.iterdir()) == ['scores.csv', 'summary.csv', 'summary.md']
    pd.testing.assert_frame_equal(pd.read_csv(out / 'scores.csv', dtype={'subject': str}), scores)
    md = (out / 'summary.md').read_text().splitlines()
    assert md[0].startswith('| structure | dice | hd95_mm | vs |') and len(md) == 2 + 9

def test_missing_prediction_is_an_error_that_names_it(release):
    truth_root, pred_root, _ = release
    (pred_root / '4' / 'result.nii.gz').unlink()
    with pytest.raises(SubjectError, match=r"Subject '4', file '.*results/4/result\.nii\.gz': prediction not found"):
        evaluate_folders(truth_root, pred_root)
    (pred_root / '5' / 'result.nii.gz').unlink()
    with pytest.raises(SubjectError, match=r"Subject \['4', '5'\]: predictions not found"):
        evaluate_folders(truth_root, pred_root)

def test_result_nii_accepted_and_extra_predictions_warned(release):
    truth_root, pred_root, _ = release
    img = nib.load(pred_root / '4' / 'result.nii.gz')
    img = nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine, img.header)
    nib.save(img, pred_root / '4' / 'result.nii'); (pred_root / '4' / 'result.nii.gz').unlink()
    (pred_root / '99').mkdir(); nib.save(img, pred_root / '99' / 'result.nii.gz')
    with pytest.warns(UserWarning, match=r"not scored: \['99'\]"):
        scores = evaluate_folders(truth_root, pred_root)
    assert scores.subject.unique().tolist() == ['1', '4', '5']

@pytest.mark.parametrize('bad, message', [
    ('shape', r"Subject '5', file '.*result\.nii\.gz': prediction has shape \(32, 30, 7\) "
              r"but the ground truth has \(32, 30, 8\)"),
    ('affine', r"Subject '5', file '.*result\.nii\.gz': prediction affine differs from the ground truth's by up to"),
    ('labels', r"Subject '5', file '.*result\.nii\.gz': prediction: label values must lie in 0..10, found \[12\]"),
])
def test_bad_prediction_is_an_error_that_names_it(release, bad, message):
    truth_root, pred_root, _ = release
    ref = nib.load(truth_root / '5' / 'segm.nii.gz')
    data, affine = np.asanyarray(ref.dataobj), ref.affine.copy()
    if bad == 'shape': data = data[..., :7]
    if bad == 'affine': affine = affine @ np.diag([-1, 1, 1, 1])
    if bad == 'labels': data = data.copy(); data[0, 0, 0] = 12
    save_nifti(data, affine, pred_root / '5' / 'result.nii.gz')
    with pytest.raises(SubjectError, match=message):
        evaluate_folders(truth_root, pred_root)

def test_no_ground_truth_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no ground truth '<id>/segm.nii.gz'"):
        evaluate_folders(tmp_path, tmp_path)

def test_files_in_another_orientation_score_as_stored(tmp_path):
    "A file stored P-I-R: erosion runs in its own first two axes; scoring the canonical Subject gives the same table."
    ph = make_phantom(6, (20, 24, 8))
    truth, pred = ph.labels, perturbed(ph.labels, 6)
    ornt = nib.orientations.axcodes2ornt('PIR')
    to_disk = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt('RAS'), ornt)
    disk_affine = ph.affine @ nib.orientations.inv_ornt_aff(to_disk, truth.shape)
    disk = lambda a: nib.orientations.apply_orientation(a, to_disk)
    save_nifti(disk(ph.images['T1']), disk_affine, tmp_path / 'training' / '7' / 'pre' / 'reg_T1.nii.gz')
    save_nifti(disk(truth), disk_affine, tmp_path / 'training' / '7' / 'segm.nii.gz')
    save_nifti(disk(pred), disk_affine, tmp_path / 'results' / '7' / 'result.nii.gz')
    s = load_subject({'T1': tmp_path / 'training' / '7' / 'pre' / 'reg_T1.nii.gz'},
                     labels=tmp_path / 'training' / '7' / 'segm.nii.gz', id='7')
    np.testing.assert_array_equal(s.labels, truth)
    assert slice_axis_of(s) == 0  # held R is the file's third axis
    on_disk = evaluate_folders(tmp_path / 'training', tmp_path / 'results')
    pd.testing.assert_frame_equal(on_disk, score_subject(s, pred), atol=1e-9)
    assert not score_labels(truth, pred, ph.affine, '7').equals(on_disk)  # eroding in the wrong plane differs
