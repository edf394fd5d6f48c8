"""A fourth network is its class and one registry entry: config checks, datasets, training, inference, the cascade
and the command line follow."""
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
from brainseg.train import TrainConfig, build_model, load_model, make_dataset, train, train_cascade

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
    cfg = TrainConfig(model='tiny', features=4, epochs=1, iters_per_epoch=2, batch_size=2, augment=False)
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
