"brainseg.data: loaders on disk, invertible preprocessing, sample shapes, ROI targets, folds, augmentation, sampling."
import json
import numpy as np
import pytest
import torch
from brainseg.data import (DatasetError, Fold, kfold, leave_one_out, load_dataset, load_folds, manifest_dataset,
                           mrbrains_dataset, preprocess, save_folds, to_network_layout, natural_key)
from brainseg.samples import (PatchDataset, SlabDataset, SliceDataset, BatchSource, class_aware_weights, epoch_order,
                              roi_presence)
from brainseg.transforms import Augment, rotate_zoom
from brainseg.randomize import Randomize
from brainseg.io import Subject, SubjectError, save_nifti
from brainseg.labels import IGNORE_INDEX, SCORED, label
from brainseg.phantom import make_phantom, write_phantom_dataset

torch.set_num_threads(1)
SHAPE = (32, 32, 8)


@pytest.fixture(scope='module')
def pps():
    "Two preprocessed phantoms of 64 x 64 x 16."
    return [preprocess(make_phantom(k, (64, 64, 16))) for k in range(2)]


# --- loaders -----------------------------------------------------------------------------------------------

def test_mrbrains_release_with_training_folder(tmp_path):
    ids = ['148', '14', '070', '1', '4']
    write_phantom_dataset(tmp_path / 'training', n=5, seed=2, shape=SHAPE, ids=ids)
    (tmp_path / 'training' / '4' / 'orig').mkdir()  # some releases carry orig/; ignored
    (tmp_path / 'docs').mkdir()  # not a subject folder
    for root in (tmp_path, tmp_path / 'training'):
        subjects = mrbrains_dataset(root)
        assert [s.id for s in subjects] == ['1', '4', '14', '070', '148']
    for s in subjects:
        ref = make_phantom((2, ids.index(s.id)), SHAPE)
        np.testing.assert_array_equal(s.labels, ref.labels)
        for m in ref.modalities: np.testing.assert_array_equal(s.images[m], ref.images[m])


def test_mrbrains_release_with_unregistered_names(tmp_path):
    write_phantom_dataset(tmp_path, n=3, seed=1, shape=SHAPE, ids=['27', '5', '29'])
    for folder in tmp_path.iterdir():
        for m in ('T1', 'IR'): (folder / 'pre' / f'reg_{m}.nii.gz').rename(folder / 'pre' / f'{m}.nii.gz')
    subjects = mrbrains_dataset(tmp_path, modalities=['IR', 'T1'], labels=False)
    assert [s.id for s in subjects] == ['5', '27', '29']
    assert subjects[0].modalities == ('T1', 'IR') and subjects[0].labels is None
    np.testing.assert_array_equal(subjects[0].images['IR'], make_phantom((1, 1), SHAPE).images['IR'])
    assert [s.id for s in load_dataset(tmp_path)] == ['5', '27', '29']


def test_mrbrains_errors(tmp_path):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(DatasetError, match=r"no subjects found in '.*empty': expected <id>/pre/reg_T1.nii.gz"):
        mrbrains_dataset(tmp_path / 'empty')
    with pytest.raises(DatasetError, match='not found'): mrbrains_dataset(tmp_path / 'nowhere')
    write_phantom_dataset(tmp_path / 'r', n=2, shape=SHAPE, ids=['1', '7'])
    (tmp_path / 'r/7/pre/FLAIR.nii.gz').unlink()
    with pytest.raises(SubjectError, match=r"Subject '7', file '.*7/pre/FLAIR.nii.gz': modality FLAIR file not found"):
        mrbrains_dataset(tmp_path / 'r')
    save_nifti(np.ones((32, 32, 7), np.float32), np.diag([7.18, 7.18, 18, 1]), tmp_path / 'r/7/pre/FLAIR.nii.gz')
    with pytest.raises(SubjectError, match=r"Subject '7'.*FLAIR.nii.gz.*shape \(32, 32, 7\)"):
        mrbrains_dataset(tmp_path / 'r')


def test_manifest_csv_and_json_round_trip(tmp_path):
    write_phantom_dataset(tmp_path / 'data', n=2, seed=3, shape=SHAPE, ids=['x', 'y'])
    rel = lambda i, f: f'../data/{i}/{f}'
    (tmp_path / 'lists').mkdir()
    csv = tmp_path / 'lists' / 'm.csv'
    csv.write_text('subject,T1,IR,FLAIR,labels\n' + ''.join(
        f'{i},{rel(i, "pre/reg_T1.nii.gz")},{rel(i, "pre/reg_IR.nii.gz")},'
        f'{rel(i, "pre/FLAIR.nii.gz")},{rel(i, "segm.nii.gz")}\n'
        for i in ('y', 'x')))
    js = tmp_path / 'lists' / 'm.json'
    js.write_text(json.dumps({'subjects': [
        {'subject': 'y', 'images': {'t1': rel('y', 'pre/reg_T1.nii.gz'),
                                    'flair': str((tmp_path / 'data/y/pre/FLAIR.nii.gz').resolve())},
         'labels': rel('y', 'segm.nii.gz')},
        {'subject': 'x', 'T1': rel('x', 'pre/reg_T1.nii.gz'), 'FLAIR': rel('x', 'pre/FLAIR.nii.gz')}]}))
    from_csv, from_json = manifest_dataset(csv), load_dataset(js)
    assert [s.id for s in from_csv] == [s.id for s in from_json] == ['y', 'x']
    assert from_csv[0].modalities == ('T1', 'IR', 'FLAIR') and from_json[0].modalities == ('T1', 'FLAIR')
    for k, s in enumerate(from_csv):
        ref = make_phantom((3, 1 - k), SHAPE)
        np.testing.assert_array_equal(s.labels, ref.labels)
        np.testing.assert_array_equal(s.images['IR'], ref.images['IR'])
        np.testing.assert_array_equal(from_json[k].images['FLAIR'], ref.images['FLAIR'])
    np.testing.assert_array_equal(from_json[0].labels, from_csv[0].labels)
    assert from_json[1].labels is None
    assert manifest_dataset(csv, labels=False)[0].labels is None
    assert manifest_dataset(csv, modalities=['FLAIR'])[1].modalities == ('FLAIR',)


BAD_MANIFESTS = [  # (file name, content, expected message)
    ('a.csv', 'id,T1\nx,a.nii.gz\n', r"missing column 'subject'; found columns \['id', 'T1'\]"),
    ('a.csv', 'subject,T1\nx,a.nii.gz\n,b.nii.gz\n', r"line 3: empty or missing 'subject'"),
    ('a.csv', 'subject,T1,FLAIR\nx,a.nii.gz,b.nii.gz\ny,c.nii.gz\n',
     r"line 3 \(subject 'y'\), column 'FLAIR': empty path"),
    ('a.csv', 'subject,T1\nx,a.nii.gz,extra\n', r"line 2: more cells than the header has columns"),
    ('a.csv', 'subject,T1\nx,a.nii.gz\nx,b.nii.gz\n', r"line 3: subject 'x' is listed twice \(first at line 2\)"),
    ('a.csv', 'subject,T1\n', r"no subjects listed"),
    ('a.json', '[{"subject": "x", "T1": "a.nii.gz"}, {"subject": "y", "FLAIR": "b.nii.gz"}]',
     r"subjects\[1\] \(subject 'y'\): no path for modalities \['T1'\]; it lists \['FLAIR'\]"),
    ('a.json', '[{"subject": "x", "images": {"T1": "a.nii.gz"}, "segm": "s.nii.gz"}]',
     r"subjects\[0\] \(subject 'x'\): unknown keys \['segm'\]"),
    ('a.json', '[{"subject": "x", "images": {}}]', r"subjects\[0\] \(subject 'x'\): no modality paths"),
    ('a.json', '[["x", "a.nii.gz"]]', r"subjects\[0\]: expected an object, found list"),
    ('a.json', '{"subject": "x"', r"not valid JSON"),
    ('a.json', '{"rows": []}', r"expected a list of subjects"),
    ('a.txt', 'subject,T1\n', r"expected a .csv or .json file, found suffix '.txt'"),
]

@pytest.mark.parametrize('name,content,message', BAD_MANIFESTS)
def test_bad_manifest(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(DatasetError, match=message):
        manifest_dataset(tmp_path / name)


def test_manifest_missing_file_names_subject(tmp_path):
    (tmp_path / 'm.csv').write_text('subject,T1\nq,nothere.nii.gz\n')
    with pytest.raises(SubjectError, match=r"Subject 'q', file '.*nothere.nii.gz': modality T1 file not found"):
        manifest_dataset(tmp_path / 'm.csv')


# --- preprocessing -----------------------------------------------------------------------------------------

@pytest.mark.parametrize('seed,shape,margin,multiple', [
    (0, (64, 64, 16), (8, 8, 2), (16, 16, 1)),
    (1, (48, 40, 12), (0, 0, 0), (16, 16, 8)),
    (2, (50, 70, 9), 3, 32),
    (3, (32, 32, 8), (20, 20, 20), (1, 1, 1)),
])
def test_preprocess_inverts_exactly(seed, shape, margin, multiple):
    s = make_phantom(seed, shape)
    pp = preprocess(s, margin=margin, multiple=multiple)
    assert all(n % m == 0 for n, m in zip(pp.image.shape[1:], np.broadcast_to(multiple, 3)))
    np.testing.assert_array_equal(pp.invert(pp.labels), s.labels)
    np.testing.assert_array_equal(pp.invert(to_network_layout(pp.labels), layout='network'), s.labels)
    probs = np.moveaxis(np.eye(11, dtype=np.float32)[pp.labels], -1, 0) * 0.9 + 0.01  # soft maps, argmax = labels
    back = pp.invert(probs)
    assert back.shape == (11, *s.shape)
    np.testing.assert_array_equal(back.argmax(0), s.labels)
    (x0, x1), (y0, y1), (z0, z1) = pp.crop.box
    outside = np.ones(s.shape, bool); outside[x0:x1, y0:y1, z0:z1] = False
    np.testing.assert_array_equal(back[:, outside], np.eye(11, dtype=np.float32)[0][:, None].repeat(outside.sum(), 1))
    inside = probs[(slice(None), *(slice(p, n - q) for (p, q), n in zip(pp.crop.pad, pp.image.shape[1:])))]
    np.testing.assert_array_equal(back[:, x0:x1, y0:y1, z0:z1], inside)
    with pytest.raises(ValueError, match='expected'): pp.invert(probs[..., 1:])


def test_crop_is_clipped_at_the_border_and_padding_is_zero():
    img = np.zeros((20, 20, 5), np.float32); img[0:6, 5:9, :] = np.arange(24 * 5).reshape(6, 4, 5) + 1
    s = Subject('b', {'T1': img}, np.eye(4), labels=(img > 50).astype(np.uint8))
    pp = preprocess(s, margin=(2, 2, 2), multiple=(16, 16, 4))
    assert pp.crop.box == ((0, 8), (3, 11), (0, 5)) and pp.crop.pad == ((4, 4), (4, 4), (1, 2))
    assert pp.image.shape == (1, 16, 16, 8)
    fg = img != 0
    np.testing.assert_allclose(pp.invert(pp.image[0])[fg], (img[fg] - img[fg].mean()) / img[fg].std(),
                               rtol=1e-5, atol=1e-6)
    assert not pp.invert(pp.image[0])[~fg].any()  # background and padding stay 0
    np.testing.assert_array_equal(pp.invert(pp.labels), s.labels)


def test_zscore_std_zero_names_subject_and_modality():
    img = np.zeros((8, 8, 4), np.float32); img[2:6, 2:6] = 7
    s = Subject('070', {'T1': img * np.arange(1, 9)[:, None, None], 'FLAIR': img}, np.eye(4),
                paths={'FLAIR': 'pre/FLAIR.nii.gz'})
    with pytest.raises(SubjectError,
                       match=r"Subject '070', file 'pre/FLAIR.nii.gz': modality FLAIR: standard deviation is 0"):
        preprocess(s)


# --- samples -----------------------------------------------------------------------------------------------

SAMPLE_CASES = [  # (dataset, kwargs, image shape, target shape, roi shape, length) with C=3, Z=16, Y=X=64
    (SliceDataset, {}, (3, 64, 64), (64, 64), (8,), 32),
    (SlabDataset, dict(k=19, margin=4), (3, 19, 64, 64), (11, 64, 64), (11, 8), 2 * 6),
    (SlabDataset, dict(k=19, margin=4, stride=4), (3, 19, 64, 64), (11, 64, 64), (11, 8), 2 * 3),
    (SlabDataset, dict(k=5, margin=2), (3, 5, 64, 64), (1, 64, 64), (1, 8), 32),
    (SlabDataset, dict(k=3, margin=0, pad='constant'), (3, 3, 64, 64), (3, 64, 64), (3, 8), 2 * 14),
    (SlabDataset, dict(k=25, margin=2), (3, 25, 64, 64), (21, 64, 64), (21, 8), 2),
    (PatchDataset, dict(size=(8, 32, 48), per_subject=3), (3, 8, 32, 48), (8, 32, 48), (8, 8), 6),
    (PatchDataset, dict(size=(24, 80, 16), per_subject=2), (3, 24, 80, 16), (24, 80, 16), (24, 8), 4),
]

@pytest.mark.parametrize('cls,kwargs,image,target,roi,length', SAMPLE_CASES)
def test_sample_shapes(pps, cls, kwargs, image, target, roi, length):
    assert all(p.image.shape == (3, 64, 64, 16) for p in pps)
    ds = cls(pps, **kwargs)
    assert len(ds) == length
    for i in (0, len(ds) // 2, -1):
        x = ds[i]
        assert (tuple(x['image'].shape), tuple(x['target'].shape), tuple(x['roi'].shape)) == (image, target, roi)
        assert x['image'].dtype == torch.float32 and x['target'].dtype == torch.int64
        assert x['roi'].dtype == torch.float32
        assert set(x['target'].unique().tolist()) <= set(range(9)) | {IGNORE_INDEX}
        torch.testing.assert_close(x['roi'], roi_presence(x['target']))
        assert x['subject'] in ('phantom0', 'phantom1') and x['origin'].shape == (3,) and x['slice'] == x['origin'][0]
    batch = ds.batch([0, len(ds) - 1])
    assert tuple(batch['image'].shape) == (2, *image) and len(batch['subject']) == 2


def test_ignore_labels_become_ignore_index(pps):
    ds = SliceDataset(pps)
    raw = to_network_layout(pps[0].labels)
    for z in range(16):
        t = ds[z]['target'].numpy()
        np.testing.assert_array_equal(t == IGNORE_INDEX, np.isin(raw[z], (9, 10)))
        np.testing.assert_array_equal(t[t != IGNORE_INDEX], raw[z][t != IGNORE_INDEX])


def test_slab_contents_and_border_padding(pps):
    vol = SlabDataset(pps).images[0]  # (C, Z, Y, X)
    rep, zero = SlabDataset(pps, k=7, margin=3), SlabDataset(pps, k=7, margin=3, pad='constant')
    x, y = rep[0], zero[0]  # output slice 0: inputs -3..3
    np.testing.assert_array_equal(x['image'].numpy(), vol[:, [0, 0, 0, 0, 1, 2, 3]])
    np.testing.assert_array_equal(y['image'][:, :3].numpy(), 0)
    np.testing.assert_array_equal(y['image'][:, 3:].numpy(), vol[:, 0:4])
    m = rep[9]  # output slice 9: inputs 6..12, no padding
    np.testing.assert_array_equal(m['image'].numpy(), vol[:, 6:13])
    assert m['slice'] == 9
    deep = SlabDataset(pps, k=22, margin=2)[0]  # 18 output slices of a 16-slice volume: the last 2 ignored
    assert (deep['target'][16:] == IGNORE_INDEX).all() and not (deep['target'][:16] == IGNORE_INDEX).all()
    assert not deep['roi'][16:].any()


def test_roi_targets_on_a_hand_made_volume():
    t = np.zeros((4, 5, 6), np.uint8)
    t[1, 0, 0] = label('G').id
    t[2, 2:4, 1:3] = label('B').id; t[2, 4, 5] = label('V').id; t[2, 0, 0] = IGNORE_INDEX
    t[3] = IGNORE_INDEX; t[3, 1, 1] = label('BS').id
    expected = np.zeros((4, 8), np.float32)
    expected[1, 0] = 1; expected[2, [1, 5]] = 1; expected[3, 7] = 1
    np.testing.assert_array_equal(roi_presence(t), expected)
    np.testing.assert_array_equal(roi_presence(torch.from_numpy(t)).numpy(), expected)
    np.testing.assert_array_equal(roi_presence(t[2]), expected[2])
    raw = t.copy(); raw[0, 0, 0], raw[0, 1, 1] = 9, 10  # raw ignore labels do not count either
    np.testing.assert_array_equal(roi_presence(raw)[0], 0)


def test_other_task_targets_and_roi_classes(pps):
    "target_fn and roi_classes make the datasets produce a cascade stage's targets; defaults unchanged."
    from brainseg.labels import COARSE_TO_FINE
    st = COARSE_TO_FINE[1]
    kw = dict(target_fn=st.target, roi_classes=range(1, st.n_classes))
    for ds in (SlabDataset(pps, k=9, margin=4, **kw), SliceDataset(pps, **kw),
               PatchDataset(pps, size=(8, 32, 32), per_subject=2, **kw)):
        np.testing.assert_array_equal(ds.targets[1], to_network_layout(st.target(pps[1].labels)))
        s = ds[3]
        assert s['roi'].shape[-1] == 4 and set(s['target'].unique().tolist()) <= {0, 1, 2, 3, 4, IGNORE_INDEX}
        np.testing.assert_array_equal(s['roi'], roi_presence(s['target'], (1, 2, 3, 4)))
    # stage class 3: lesions
    lesions = PatchDataset(pps, size=(4, 16, 16), per_subject=4, p_class=1.0, classes=[3], **kw)
    assert all((lesions[i]['target'] == 3).any() for i in range(len(lesions)))
    assert SlabDataset(pps, k=9, margin=4)[0]['roi'].shape == (1, 8) and PatchDataset(pps).classes == SCORED
    with pytest.raises(SubjectError, match="target_fn must return integer classes 0..255 of the label map's shape"):
        SliceDataset(pps, target_fn=lambda seg: seg.astype(np.float32))


# --- folds -------------------------------------------------------------------------------------------------

IDS = ['1', '4', '5', '7', '14', '070', '148']

def assert_partition(folds, ids):
    vals = [i for f in folds for i in f.val]
    assert sorted(vals, key=natural_key) == sorted(ids, key=natural_key)  # each subject validates exactly once
    for f in folds:
        assert not set(f.train) & set(f.val)
        assert set(f.train) | set(f.val) == set(ids)

@pytest.mark.parametrize('n,k', [(7, 5), (7, 7), (7, 2), (10, 3), (2, 2)])
def test_kfold_partitions_and_is_deterministic(n, k):
    ids = IDS[:n] if n <= 7 else [f's{i}' for i in range(n)]
    folds = kfold(ids, k=k, seed=0)
    assert len(folds) == k
    assert_partition(folds, ids)
    sizes = [len(f.val) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    assert kfold(list(reversed(ids)), k=k, seed=0) == folds


def test_kfold_seed_changes_the_split():
    splits = {tuple(f.val for f in kfold(IDS, 5, seed)) for seed in range(5)}
    assert len(splits) > 1


def test_leave_one_out():
    folds = leave_one_out(reversed(IDS))
    assert [f.val for f in folds] == [(i,) for i in IDS]
    assert_partition(folds, IDS)


@pytest.mark.parametrize('call,message', [
    (lambda: kfold(IDS, k=8), r'k must lie in 2..7'),
    (lambda: kfold(IDS, k=1), r'k must lie in 2..7'),
    (lambda: kfold(['1', '4', '1']), r"repeated: \['1'\]"),
    (lambda: leave_one_out(['1']), r'at least 2 subjects'),
])
def test_fold_errors(call, message):
    with pytest.raises(ValueError, match=message): call()


def test_save_load_folds(tmp_path):
    folds = kfold(IDS, 5, seed=3)
    path = save_folds(folds, tmp_path / 'run' / 'folds.json')
    assert load_folds(path) == folds and all(isinstance(f, Fold) for f in load_folds(path))
    assert json.loads(path.read_text())['folds'][0]['val'] == list(folds[0].val)
    assert [p.name for p in path.parent.iterdir()] == ['folds.json']  # no temporary left behind
    bad = {'folds': [{'train': ['1'], 'val': ['4']}, {'train': ['1'], 'val': ['4']}]}
    (tmp_path / 'bad.json').write_text(json.dumps(bad))
    with pytest.raises(DatasetError, match=r"folds\[1\]: subject '4' already validates in folds\[0\]"):
        load_folds(tmp_path / 'bad.json')
    with pytest.raises(ValueError, match='both train and val'):
        save_folds([Fold(('1', '4'), ('4',)), Fold(('4',), ('1',))], tmp_path / 'x.json')
    assert not (tmp_path / 'x.json').exists()


# --- augmentation and sampling -----------------------------------------------------------------------------

def labelled_batch(pps):
    "Two slabs whose image is a function of their target: image = target + 1 (0 where ignored), in 2 channels."
    t = SlabDataset(pps, k=4, margin=0).targets[0][6:10].long()
    t = torch.stack([t, t.flip(-2)])
    return torch.where(t == IGNORE_INDEX, 0, t.float() + 1)[:, None].repeat(1, 2, 1, 1, 1), t

def test_flip_keeps_alignment(pps):
    img, t = labelled_batch(pps)
    aug = Augment(flip=1.0, rotate=0, zoom=(1, 1), intensity_scale=(1, 1), intensity_shift=(0, 0), gamma=(1, 1))
    i2, t2 = aug(img, t, torch.Generator().manual_seed(0))
    assert torch.equal(t2, t.flip(-1))
    assert torch.equal(i2[:, 1], torch.where(t2 == IGNORE_INDEX, 0, t2 + 1.0))


def test_a_known_rotation_moves_a_labelled_square_and_its_image_together():
    "A square off the centre, turned 30 degrees: image and label land on the same voxels, where the rotation puts them."
    t = torch.zeros(1, 1, 65, 65, dtype=torch.long)
    t[..., 10:20, 40:50] = 3
    img = (t == 3).float()[:, None] * 7
    theta = torch.tensor([np.pi / 6])
    i2, t2 = rotate_zoom(img, t, theta, torch.tensor([1.0]))
    centroid = lambda m: np.argwhere(m).mean(0)
    at_label, at_image = centroid(t2[0, 0].numpy() == 3), centroid(i2[0, 0, 0].numpy() > 3.5)
    assert np.abs(at_label - at_image).max() < 0.5
    # where the square's centre goes: output (y, x) -> input by the rotation about the centre (32, 32)
    yc, xc = 14.5 - 32, 44.5 - 32
    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    expected = np.linalg.solve([[c, s], [-s, c]], [xc, yc])[::-1] + 32  # solve input = R @ output for output
    assert np.abs(at_label - expected).max() < 1.0, (at_label, expected)
    assert (t2 == 3).sum() == pytest.approx(100, rel=0.1)


def test_rotation_keeps_alignment(pps):
    img, t = labelled_batch(pps)
    aug = Augment(flip=0.5, rotate=15, zoom=(0.9, 1.1), intensity_scale=(1, 1), intensity_shift=(0, 0), gamma=(1, 1))
    for seed in range(4):
        i2, t2 = aug(img, t, torch.Generator().manual_seed(seed))
        assert set(t2.unique().tolist()) <= set(t.unique().tolist()) | {IGNORE_INDEX}  # nearest: no new values
        assert not torch.equal(t2, t)
        scored = t2 != IGNORE_INDEX
        agree = (i2[:, 0].round()[scored] == t2[scored] + 1).float().mean()  # linear image vs nearest target
        assert agree > 0.9, agree
        assert torch.equal(i2[:, 0], i2[:, 1])  # channels transformed alike


@pytest.mark.parametrize('transform', [Augment(flip=0, rotate=0, zoom=(1, 1)),
                                       Randomize(flip=0, rotate=0, zoom=(1, 1)),
                                       Randomize(flip=0, rotate=0, zoom=(1, 1), p_synth=0)])
def test_intensity_transforms_move_no_label(transform):
    "With two structures' intensities swapped or not, no target voxel moves; every image is finite, and normalized."
    from brainseg.template import make_template_subject
    p = preprocess(make_template_subject(1, shape=(64, 64, 16), modalities=['T1']), normalize='percentile')
    ds = SlabDataset([p], k=5, margin=2)
    batch = ds.batch(range(0, 12, 2))
    image, target = batch['image'], ds.batch(range(0, 12, 2), transform=None)['target']
    full = torch.stack([ds.window(i)[2] for i in range(0, 12, 2)]).long()  # the labels of every image slice
    g, wm = full == label('G').id, full == label('WM').id
    swapped = image.clone()
    swapped[:, 0][g], swapped[:, 0][wm] = image[:, 0][wm].mean(), image[:, 0][g].mean()
    for inp in (image, swapped):
        out, t2 = transform(inp, full, torch.Generator().manual_seed(4))
        assert torch.equal(t2, full) and torch.equal(ds.output_slices(t2), target)
        assert torch.isfinite(out).all()
        if isinstance(transform, Randomize):
            for one in out:
                fg = one[one > 0]
                fg = fg[fg > 0.1 * fg.quantile(0.99)]
                assert float(fg.quantile(0.99)) == pytest.approx(1.0, abs=1e-3)


def test_intensity_changes_only_the_foreground(pps):
    img, t = labelled_batch(pps)
    i2, t2 = Augment(flip=0, rotate=0, zoom=(1, 1))(img, t, torch.Generator().manual_seed(1))
    assert torch.equal(t2, t)
    assert (i2[img == 0] == 0).all() and not torch.allclose(i2[img != 0], img[img != 0])


BATCH_IN_A_PROCESS = """
import sys, torch
from brainseg.phantom import make_phantom
from brainseg.data import preprocess
from brainseg.samples import SlabDataset, BatchSource
from brainseg.randomize import Randomize
ds = SlabDataset([preprocess(make_phantom(k, (64, 64, 16)), normalize='percentile') for k in range(2)], k=5, margin=2,
                 crop=32)
b = BatchSource(ds, 4, 10, seed=7, transform=Randomize())(3, 6)
torch.save({k: b[k] for k in ('image', 'target', 'origin')}, sys.argv[1])
"""

def test_the_same_seed_epoch_and_step_give_the_same_batch_in_any_process(tmp_path):
    "A batch is a function of (seed, epoch, step) only: another process, started afresh, draws it bit for bit."
    import subprocess, sys
    r = subprocess.run([sys.executable, '-c', BATCH_IN_A_PROCESS, str(tmp_path / 'b.pt')], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    there = torch.load(tmp_path / 'b.pt')
    ds = SlabDataset([preprocess(make_phantom(k, (64, 64, 16)), normalize='percentile') for k in range(2)], k=5,
                     margin=2, crop=32)
    source = BatchSource(ds, 4, 10, seed=7, transform=Randomize())
    source(0, 0); source(5, 1)  # other batches drawn before change nothing
    here = source(3, 6)
    for k in there: assert torch.equal(here[k], there[k]), k
    assert not torch.equal(BatchSource(ds, 4, 10, seed=8, transform=Randomize())(3, 6)['image'], here['image'])


def test_class_aware_draws_oversample_the_rarest_class(pps):
    "The trainer's draws (`epoch_order` with `class_aware_weights`): rarest class oversampled, reproducible per epoch."
    ds = SliceDataset(pps)
    freq = ds.presence.mean(0)
    rare = int(np.argmin(np.where(freq > 0, freq, np.inf)))
    weights = class_aware_weights(ds.presence)
    draw = lambda epoch, seed=0: np.array(epoch_order(len(ds), 4000, epoch, seed, weights))
    drawn = draw(0)
    assert np.array_equal(drawn, draw(0))  # same seed and epoch, same draws
    assert not np.array_equal(drawn, draw(1)) and not np.array_equal(drawn, draw(0, seed=1))
    uniform = ds.presence[np.random.default_rng(0).integers(len(ds), size=4000), rare].mean()
    favoured = ds.presence[drawn, rare].mean()
    assert favoured > 2 * uniform, (SCORED[rare], uniform, favoured)


def test_patch_centres_oversample_a_chosen_class(pps):
    def lesion_centre_rate(p):
        ds = PatchDataset(pps, size=(1, 1, 1), per_subject=300, p_class=p, classes=['L'], seed=0)
        return np.mean([ds[i]['target'].item() == label('L').id for i in range(len(ds))])
    base, chosen = lesion_centre_rate(0.0), lesion_centre_rate(0.6)
    assert base < 0.05 and 0.5 < chosen < 0.75, (base, chosen)
