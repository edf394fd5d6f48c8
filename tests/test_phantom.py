"Phantom determinism: same seed, same bytes on disk; another seed, another subject."
import hashlib
import numpy as np
from brainseg.phantom import make_phantom, write_phantom_dataset
from brainseg.io import read_mrbrains_subject
from brainseg.labels import SCORED, IGNORE

def digest(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob('*.nii.gz'))}

def test_same_seed_same_bytes(tmp_path):
    a = digest(write_phantom_dataset(tmp_path / 'a', n=2, seed=4, shape=(32, 32, 8))[0].parent)
    b = digest(write_phantom_dataset(tmp_path / 'b', n=2, seed=4, shape=(32, 32, 8))[0].parent)
    c = digest(write_phantom_dataset(tmp_path / 'c', n=2, seed=5, shape=(32, 32, 8))[0].parent)
    assert len(a) == 8 and a == b
    assert all(a[k] != c[k] for k in a)

def test_subjects_of_a_dataset_differ(tmp_path):
    s1, s2 = (read_mrbrains_subject(f) for f in write_phantom_dataset(tmp_path, n=2, shape=(48, 48, 12)))
    assert (s1.labels != s2.labels).mean() > 0.02

def test_every_class_present_at_several_sizes():
    for shape in [(32, 32, 8), (96, 96, 24), (160, 128, 32)]:
        counts = np.bincount(make_phantom(3, shape).labels.ravel(), minlength=11)
        assert (counts[list(SCORED) + list(IGNORE)] > 0).all(), (shape, counts)
