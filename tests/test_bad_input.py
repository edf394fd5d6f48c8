"The bad-input catalogue: each case raises a SubjectError naming subject, file and problem, and writes nothing."
import gzip, re
import numpy as np
import pytest
from brainseg.io import load_subject, save_labels, read_mrbrains_subject, SubjectError
from conftest import AFFINE

SHAPE = (8, 7, 5)

@pytest.fixture
def good(write, rng):
    "Paths of a valid subject: three modalities and a label map."
    img = rng.random(SHAPE).astype(np.float32) + 0.1
    return {'T1': write('T1.nii.gz', img), 'IR': write('IR.nii.gz', img * 2), 'FLAIR': write('FLAIR.nii.gz', img + 1),
            'labels': write('segm.nii.gz', rng.integers(0, 11, SHAPE).astype(np.uint8))}

def load(paths, id='s07'):
    return load_subject({k: v for k, v in paths.items() if k != 'labels'}, labels=paths.get('labels'), id=id)

def expect_error(paths, culprit, *fragments):
    with pytest.raises(SubjectError) as e: load(paths)
    msg = str(e.value)
    assert "Subject 's07'" in msg and culprit.name in msg, msg
    for f in fragments: assert f in msg, msg
    return e.value

def test_good_subject_loads(good):
    s = load(good)
    assert s.modalities == ('T1', 'IR', 'FLAIR') and s.shape == SHAPE and s.labels.dtype == np.uint8

def test_missing_modality_file(good):
    good['FLAIR'].unlink()
    expect_error(good, good['FLAIR'], 'modality FLAIR file not found')

@pytest.mark.parametrize('how', ['truncated', 'garbage', 'empty'])
def test_unreadable_nifti(good, how):
    p = good['IR']
    raw = p.read_bytes()
    p.write_bytes({'truncated': raw[:len(raw) // 2], 'garbage': gzip.compress(b'not a nifti' * 50), 'empty': b''}[how])
    expect_error(good, p, 'cannot read modality IR as NIfTI')

def test_truncated_label_map(good):
    p = good['labels']; p.write_bytes(p.read_bytes()[:-40])
    expect_error(good, p, 'cannot read label map')

@pytest.mark.parametrize('shape', [(8, 7), (8, 7, 5, 2)])
def test_not_3d(good, write, shape):
    good['T1'] = write('T1.nii.gz', np.ones(shape, np.float32))
    expect_error(good, good['T1'], 'expected a 3D image', f"found shape {shape}")

def test_trailing_singleton_is_3d(good, write):
    good['T1'] = write('T1.nii.gz', np.ones(SHAPE + (1,), np.float32))
    assert load(good).shape == SHAPE

def test_shapes_disagree(good, write):
    good['FLAIR'] = write('FLAIR.nii.gz', np.ones((8, 7, 6), np.float32))
    expect_error(good, good['FLAIR'], 'modality FLAIR has shape (8, 7, 6) but T1 has (8, 7, 5)')

def test_affines_disagree(good, write, rng):
    shifted = AFFINE.copy(); shifted[0, 3] = 0.5
    good['IR'] = write('IR.nii.gz', rng.random(SHAPE).astype(np.float32) + 0.1, shifted)
    expect_error(good, good['IR'], "modality IR affine differs from T1's by up to 0.5 mm")

def test_affine_within_tolerance(good, write, rng):
    nudged = AFFINE.copy(); nudged[0, 3] = 1e-5
    good['IR'] = write('IR.nii.gz', rng.random(SHAPE).astype(np.float32) + 0.1, nudged)
    assert load(good).modalities == ('T1', 'IR', 'FLAIR')

def test_label_map_shape(good, write):
    good['labels'] = write('segm.nii.gz', np.zeros((8, 7, 4), np.uint8))
    expect_error(good, good['labels'], 'label map has shape (8, 7, 4) but T1 has (8, 7, 5)')

@pytest.mark.parametrize('value, dtype, fragment', [(1.5, np.float32, 'non-integer'), (11, np.int16, 'found [11]'),
                                                     (-1, np.int16, 'found [-1]')])
def test_bad_label_values(good, write, value, dtype, fragment):
    lab = np.zeros(SHAPE, dtype); lab[1, 2, 3] = value
    good['labels'] = write('segm.nii.gz', lab)
    expect_error(good, good['labels'], fragment)

@pytest.mark.parametrize('value', [np.nan, np.inf, -np.inf])
def test_non_finite_intensities(good, write, rng, value):
    img = rng.random(SHAPE).astype(np.float32); img[0, 0, 0] = value
    good['FLAIR'] = write('FLAIR.nii.gz', img)
    expect_error(good, good['FLAIR'], 'modality FLAIR: 1 voxels are NaN or inf')

def test_all_zero_modality(good, write):
    good['IR'] = write('IR.nii.gz', np.zeros(SHAPE, np.float32))
    expect_error(good, good['IR'], 'modality IR: all voxels are zero')

def test_mrbrains_folder_missing_modality(tmp_path, write, rng):
    (tmp_path / '070' / 'pre').mkdir(parents=True)
    write('070/pre/reg_T1.nii.gz', rng.random(SHAPE).astype(np.float32) + 0.1)
    with pytest.raises(SubjectError,
                       match=r"Subject '070', file '.*070/pre/reg_IR.nii.gz': modality IR file not found"):
        read_mrbrains_subject(tmp_path / '070')

@pytest.mark.parametrize('labels, fragment', [(np.zeros((8, 7, 4)), 'has shape (8, 7, 4)'),
                                              (np.full(SHAPE, 12), 'found [12]'),
                                              (np.full(SHAPE, 0.5), 'non-integer')])
def test_bad_output_is_refused_before_writing(good, tmp_path, labels, fragment):
    s = load(good)
    out = tmp_path / 'out' / 's07' / 'result.nii.gz'
    with pytest.raises(SubjectError, match=re.escape(fragment)): save_labels(labels, out, s)
    assert not (tmp_path / 'out').exists()
