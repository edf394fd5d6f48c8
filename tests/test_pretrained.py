"The shipped models for real scans: safe loading, prediction on any grid, recorded scores, bad input refused."
import json
import numpy as np
import nibabel as nib
import pytest
import torch
from brainseg.cli import main
from brainseg.data import subjects_from
from brainseg.experiments import pretrained_path
from brainseg.infer import load_predictor, predict_subject
from brainseg.labels import SCORED
from brainseg.metrics import score_subject
from brainseg.phantom import make_phantom
from brainseg.io import save_nifti

NAMES = ('pretrained:t1', 'pretrained:multi')


def card(name):
    return json.loads(pretrained_path(name).with_suffix('.json').read_text())


@pytest.mark.parametrize('name', NAMES)
def test_loads_safely_and_predicts_a_phantom(name, monkeypatch):
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, 'load', lambda *a, **k: calls.append(k.get('weights_only')) or real_load(*a, **k))
    model, modalities = load_predictor(pretrained_path(name))
    assert calls == [True]  # one read, through the checked loader, weights only
    raw = real_load(pretrained_path(name), weights_only=True)
    assert {v.dtype for v in raw['model'].values() if v.is_floating_point()} == {torch.float16}
    assert model.normalize == 'percentile' and len(model.spacing) == 3
    assert modalities == tuple(card(name)['params']['config']['modalities'])
    phantom = make_phantom(0, (96, 96, 24), modalities=modalities)  # another grid than the model's
    labels = predict_subject(model, phantom, modalities)
    assert labels.shape == phantom.shape and labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, *SCORED}
    assert (labels > 0).mean() > 0.05


@pytest.mark.parametrize('name', NAMES)
def test_recorded_held_out_scores_match_a_rerun(name):
    c = card(name)
    p = c['params']
    modalities = p['config']['modalities']
    held_out = [s for s in subjects_from(p['data'], p['size'], p['data_seed'], modalities)
                if s.id in p['val_ids'].split(',')]
    assert [s.id for s in held_out] == c['subjects']['test']
    model, _ = load_predictor(pretrained_path(name))
    dice = np.mean([score_subject(s, predict_subject(model, s, modalities))['dice'].mean() for s in held_out])
    assert abs(dice - c['held_out']['mean_dice']) < 0.01, (dice, c['held_out']['mean_dice'])
    assert c['shipped_scores']['mean_dice'] == pytest.approx(dice, abs=1e-4)


def _nifti(tmp_path, name, data, affine=np.diag([1.0, 1.0, 1.0, 1.0])):
    return save_nifti(np.asarray(data, np.float32), affine, tmp_path / f"{name}.nii.gz")


@pytest.mark.parametrize('case,fragment', [
    ('2d', 'expected a 3D image, found shape (160, 180)'),
    ('slice', 'field of view 160 x 180 x 1 mm (shape (160, 180, 1)): a model for real scans needs a whole brain'),
    ('4d', 'expected a 3D image, found shape (160, 180, 150, 3)'),
    ('nan', 'voxels are NaN or inf'),
    ('empty', 'all voxels are zero (empty image)'),
    ('slab', 'field of view 160 x 180 x 6 mm'),
])
def test_bad_input_fails_clearly_and_writes_nothing(tmp_path, capsys, case, fragment):
    rng = np.random.default_rng(0)
    head = rng.random((160, 180, 150)).astype(np.float32) * 100
    data = {'2d': head[:, :, 0], 'slice': head[:, :, :1], '4d': np.stack([head] * 3, -1),
            'nan': np.where(head > 99.9, np.nan, head), 'empty': np.zeros_like(head), 'slab': head[:, :, :6]}[case]
    good = _nifti(tmp_path, 'good', head)
    bad = _nifti(tmp_path, case, data)
    out = tmp_path / 'out'
    assert main(['predict', '--model', 'pretrained:t1', str(good), str(bad), '--out', str(out)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and f"'{case}'" in err and bad.name in err, err
    assert not out.exists()  # the good input was not written either: inputs are checked first


def test_a_nifti_file_in_any_orientation(tmp_path, capsys):
    t1 = make_phantom(1, (96, 96, 32), modalities=['T1'])
    flipped = np.flip(t1.images['T1'], 0).transpose(2, 0, 1)  # stored LAS-ish, axes permuted
    affine = nib.affines.from_matvec(np.array([[0, -2.0, 0], [0, 0, 2.4], [4.5, 0, 0]]), [100, -110, -70])
    path = _nifti(tmp_path, 'mine', flipped, affine)
    assert main(['predict', '--model', 'pretrained:t1', str(path), '--out', str(tmp_path / 'out')]) == 0
    result = nib.load(tmp_path / 'out/mine/result.nii.gz')
    assert result.shape == flipped.shape and np.allclose(result.affine, affine, atol=1e-4)
    assert 'mine' in capsys.readouterr().out
    multi = main(['predict', '--model', 'pretrained:multi', str(path), '--out', str(tmp_path / 'out2')])
    assert multi == 2 and "needs ['T1', 'IR', 'FLAIR']" in capsys.readouterr().err
