import numpy as np
import pytest
from brainseg.io import save_nifti

AFFINE = np.diag([0.958, 0.958, 3.0, 1.0])

@pytest.fixture
def write(tmp_path):
    "Write an array as NIfTI under tmp_path (with the MRBrainS18 spacing unless an affine is given); return its path."
    def _write(name, data, affine=AFFINE):
        return save_nifti(np.asarray(data), affine, tmp_path / name)
    return _write

@pytest.fixture
def rng():
    return np.random.default_rng(0)
