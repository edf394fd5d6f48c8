"""A fourth network is its class and one registry entry: config checks, datasets, training, inference, the cascade
and the command line follow. So does a new augmentation: its `Transform` class and one entry."""
import numpy as np
import pytest
import torch
import torch.nn as nn
from brainseg.cascade import Cascade
from brainseg.cli import _parser, main
from brainseg.data import preprocess, to_network_layout
from brainseg.models import MODELS, ModelSpec, make_model, model_geometry, register_model
from brainseg.phantom import make_phantom
from brainseg.predict import predict_volume
from brainseg.trainconfig import TrainConfig, build_model
from brainseg.checkpoints import load_model
from brainseg.train import make_dataset, train, train_cascade
from brainseg.transforms import TRANSFORMS, Transform, register_transform, uniform
from dataclasses import dataclass

torch.set_num_threads(2)


class TinyFCN(nn.Module):
    "A newcomer's network: two 3x3 convolutions on slices, with the registry's constructor arguments."
    def __init__(self, in_channels=3, n_classes=9, features=8, class_head=False, n_rois=8, norm='instance'):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, features, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(features, n_classes, 3, padding=1))
        self.cls = nn.Linear(n_classes, n_rois) if class_head else None

    def forward(self, x):
        seg = self.body(x)
        return {'seg': seg} if self.cls is None else {'seg': seg, 'cls': self.cls(seg.mean((2, 3)))}


@pytest.fixture
def tiny():
    register_model('tiny', ModelSpec(TinyFCN, 'slice', features=int,
                                     sizes=lambda m: dict(slices_lost=0, multiple=1, depth_multiple=1),
                                     about='two convolutions; features: their channels (8)'))
    yield 'tiny'
    del MODELS['tiny']


def test_a_fourth_network_needs_only_its_class_and_one_entry(tiny, tmp_path):
    cfg = TrainConfig(model='tiny', features=4, epochs=1, iters_per_epoch=2, batch_size=2, augment='none')
    assert build_model(cfg).body[0].out_channels == 4  # `features` as the entry says
    assert model_geometry(make_model('tiny'))['kind'] == 'slice'
    subjects = [make_phantom(s, (32, 32, 16)) for s in range(2)]
    assert type(make_dataset(cfg, [preprocess(subjects[0])])).__name__ == 'SliceDataset'
    history = train(cfg, subjects[:1], subjects[1:], out=tmp_path / 'run', log=lambda *a: None, progress=False)
    assert len(history) == 1 and 0 <= history[0]['val_dice'] <= 1
    model, saved = load_model(tmp_path / 'run' / 'last.pt')
    assert saved.model == 'tiny' and isinstance(model, TinyFCN)
    image = to_network_layout(preprocess(subjects[1]).image)
    assert predict_volume(model, image).shape == (9, *image.shape[1:])
    cascade = Cascade(configs=[{'model': 'tiny'}] * 3)
    assert cascade.predict(image).shape == image.shape[1:]
    cas = train_cascade(cfg, subjects[:1], out=tmp_path / 'cas', log=lambda *a: None, progress=False)
    assert [c.model for c in cas.configs] == ['tiny'] * 3
    train_parser = _parser()._subparsers._group_actions[0].choices['train']
    assert 'tiny' in next(a for a in train_parser._actions if a.dest == 'model').choices
    assert 'tiny: two convolutions' in train_parser.format_help()


def test_unregistered_names_and_classes_are_errors(capsys):
    with pytest.raises(ValueError, match=r"model must be one of \['base', 'unet', 'vnet'\], found 'tiny'"):
        TrainConfig(model='tiny')
    with pytest.raises(TypeError, match='TinyFCN is not a registered network'): model_geometry(TinyFCN())
    with pytest.raises(ValueError, match="geometry must be one of"):
        register_model('odd', ModelSpec(TinyFCN, 'graph', features=int, sizes=dict))
    with pytest.raises(SystemExit): main(['train', '--data', 'phantom:2', '--model', 'tiny'])
    assert "invalid choice: 'tiny'" in capsys.readouterr().err
    assert np.array_equal(sorted(MODELS), ['base', 'unet', 'vnet'])


@dataclass
class Cutout(Transform):
    "A newcomer's augmentation: one random square of every image zeroed; targets untouched."
    size: int = 8  # side of the square, voxels
    def __call__(self, image, target, generator):
        y, x = (int(uniform(generator, (), 0, n - self.size)) for n in image.shape[-2:])
        image = image.clone()
        image[..., y:y + self.size, x:x + self.size] = 0
        return image, target


@pytest.fixture
def cutout():
    register_transform('cutout', Cutout)
    yield 'cutout'
    del TRANSFORMS['cutout']


def test_a_new_augmentation_needs_only_its_class_and_one_entry(cutout, tmp_path):
    out = tmp_path / 'run'
    assert main(['train', '--data', 'phantom:2', '--size', '32x32x16', '--model', 'unet', '--features', '4',
                 '--epochs', '1', '--iters-per-epoch', '2', '--batch-size', '2', '--val-ids', 'phantom0-1',
                 '--augment', 'cutout', '--augment-settings', '{"size": 5}', '--out', str(out)]) == 0
    _, cfg = load_model(out / 'last.pt')
    assert (cfg.augment, cfg.augment_settings) == ('cutout', {'size': 5})
    train_parser = _parser()._subparsers._group_actions[0].choices['train']
    assert 'cutout' in next(a for a in train_parser._actions if a.dest == 'augment').choices


@pytest.mark.parametrize('args,message', [
    (['--augment', 'elastic'], "invalid choice: 'elastic' (choose from"),
    (['--augment', 'standard', '--augment-settings', '{"p_synth": 0.5}'],
     "transform 'standard' has no setting 'p_synth'; its settings: flip, rotate, zoom"),
    (['--augment', 'randomize'], "augment='randomize' needs normalize='percentile'"),
    (['--augment-settings', '[1, 2]'], "expected a JSON object, found '[1, 2]'"),
])
def test_bad_augmentation_configs_fail_before_anything_is_written(tmp_path, capsys, args, message):
    out = tmp_path / 'run'
    try: code = main(['train', '--data', 'phantom:2', '--size', '32x32x16', '--out', str(out), *args])
    except SystemExit as e: code = e.code  # argparse's own errors
    assert code == 2 and message in capsys.readouterr().err
    assert not out.exists()
