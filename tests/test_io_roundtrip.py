"Save -> load round trips: labels, affine and spacing survive exactly, whatever the on-disk orientation."
import numpy as np
import nibabel as nib
import pytest
from brainseg.io import load_subject, save_labels, read_mrbrains_subject, write_mrbrains_subject, save_nifti
from brainseg.phantom import make_phantom

@pytest.mark.parametrize('axcodes', ['RAS', 'LPS', 'LAS', 'PIR'])
def test_result_lands_in_the_input_grid(tmp_path, rng, axcodes):
    "A label map predicted on the canonical grid is written back voxel for voxel in the file's own orientation."
    ornt = nib.orientations.axcodes2ornt(axcodes)
    affine = nib.orientations.inv_ornt_aff(ornt, (9, 8, 5)) @ np.diag([0.958, 0.958, 3.0, 1])
    affine[:3, 3] += [10, -20, 30]
    img = rng.random((9, 8, 5)).astype(np.float32) + 0.1
    seg = rng.integers(0, 11, (9, 8, 5)).astype(np.uint8)
    save_nifti(img, affine, tmp_path / 'T1.nii.gz'); save_nifti(seg, affine, tmp_path / 'segm.nii.gz')
    s = load_subject({'T1': tmp_path / 'T1.nii.gz'}, labels=tmp_path / 'segm.nii.gz')
    assert nib.aff2axcodes(s.affine) == ('R', 'A', 'S')
    # the canonical view is the same anatomy: world coordinates of a labelled voxel agree
    i, j, k = np.argwhere(s.labels == s.labels.max())[0]
    world = s.affine @ [i, j, k, 1]
    vox = np.round(np.linalg.inv(affine) @ world).astype(int)[:3]
    assert seg[tuple(vox)] == s.labels[i, j, k]
    save_labels(s.labels, tmp_path / 'result.nii.gz', s)
    out = nib.load(tmp_path / 'result.nii.gz')
    np.testing.assert_array_equal(np.asanyarray(out.dataobj), seg)
    np.testing.assert_allclose(out.affine, affine, atol=1e-6)
    assert out.get_data_dtype() == np.uint8

def test_mrbrains_layout_round_trip(tmp_path):
    ph = make_phantom(5, (24, 20, 8))
    write_mrbrains_subject(ph, tmp_path)
    back = read_mrbrains_subject(tmp_path / ph.id)
    assert back.id == ph.id and back.modalities == ph.modalities
    np.testing.assert_array_equal(back.labels, ph.labels)
    np.testing.assert_allclose(back.affine, ph.affine, atol=1e-6)
    np.testing.assert_allclose(back.spacing, ph.spacing, rtol=1e-6)
    for m in ph.modalities: np.testing.assert_array_equal(back.images[m], ph.images[m])

def test_release_variant_without_registered_names(tmp_path):
    "Releases with pre/T1.nii.gz and pre/IR.nii.gz (no reg_ prefix) load the same."
    ph = make_phantom(2, (16, 16, 6), id='27')
    folder = write_mrbrains_subject(ph, tmp_path)
    for m in ('T1', 'IR'): (folder / f'pre/reg_{m}.nii.gz').rename(folder / f'pre/{m}.nii.gz')
    back = read_mrbrains_subject(folder)
    np.testing.assert_array_equal(back.images['IR'], ph.images['IR'])
