"Shape tables for every network (2D, 2.5D, 3D; with and without class head) and bad-configuration cases."
import pytest
import torch
from brainseg.models import BaseNet, VNet, make_model

torch.set_num_threads(2)

CASES = [  # (name, kwargs, input shape, seg shape, cls shape or None)
    ('base', dict(in_channels=3, n_classes=9), (2, 3, 19, 32, 32), (2, 9, 11, 32, 32), (2, 11, 8)),
    ('base', dict(in_channels=1, n_classes=5, class_head=False), (1, 1, 9, 16, 20), (1, 5, 1, 16, 20), None),
    ('base', dict(in_channels=2, n_classes=4, fuse_padding=True, n_rois=3), (1, 2, 1, 16, 16), (1, 4, 1, 16, 16),
     (1, 1, 3)),
    ('unet', dict(in_channels=3, n_classes=9), (2, 3, 32, 48), (2, 9, 32, 48), None),
    ('unet', dict(in_channels=3, n_classes=9, features=(8, 16, 32, 64)), (1, 3, 24, 16), (1, 9, 24, 16), None),
    ('unet', dict(in_channels=1, n_classes=2, features=(8, 16, 32), class_head=True), (3, 1, 16, 16), (3, 2, 16, 16),
     (3, 8)),
    ('vnet', dict(in_channels=3, n_classes=9, features=4, kernel_size=3), (1, 3, 16, 32, 16), (1, 9, 16, 32, 16), None),
    ('vnet', dict(in_channels=3, n_classes=9, features=4, class_head=True), (2, 3, 16, 16, 16), (2, 9, 16, 16, 16),
     (2, 16, 8)),
    ('vnet', dict(in_channels=1, n_classes=3, features=4, kernel_size=3, class_head=True), (1, 1, 32, 16, 16),
     (1, 3, 32, 16, 16), (1, 32, 8)),
]

@pytest.mark.parametrize('name, kwargs, in_shape, seg_shape, cls_shape', CASES)
def test_shapes(name, kwargs, in_shape, seg_shape, cls_shape):
    torch.manual_seed(0)
    out = make_model(name, **kwargs)(torch.randn(in_shape))
    assert tuple(out['seg'].shape) == seg_shape
    assert (tuple(out['cls'].shape) if 'cls' in out else None) == cls_shape

@pytest.mark.parametrize('name, kwargs, in_shape, fragment', [
    ('base', {}, (2, 3, 19, 30, 32), 'multiples of 4'),
    ('base', {}, (2, 3, 32, 32), 'expects (B, 3, K, H, W)'),
    ('unet', {}, (2, 3, 36, 32), 'multiples of 8'),
    ('unet', {'in_channels': 2}, (2, 3, 32, 32), 'expects (B, 2, H, W)'),
    ('vnet', {'features': 4, 'kernel_size': 3}, (1, 3, 8, 32, 32), 'multiples of 16; found (8, 32, 32)'),
    ('vnet', {'features': 4, 'kernel_size': 3}, (1, 3, 32, 32), 'expects (B, 3, D, H, W)'),
])
def test_bad_input_shapes(name, kwargs, in_shape, fragment):
    with pytest.raises(ValueError) as e: make_model(name, **kwargs)(torch.randn(in_shape))
    assert fragment in str(e.value)

@pytest.mark.parametrize('name, kwargs, fragment', [
    ('base', dict(n_classes=1), 'n_classes >= 2'),
    ('unet', dict(features=(32,)), 'at least 2 levels'),
    ('vnet', dict(kernel_size=4), 'odd kernel_size'),
    ('nope', {}, 'Unknown model'),
])
def test_bad_configurations(name, kwargs, fragment):
    with pytest.raises(ValueError, match=fragment): make_model(name, **kwargs)

def test_vnet_takes_three_modalities_where_monai_refuses():
    import monai.networks.nets as monai  # a dev requirement: its absence fails `make test`
    with pytest.raises(Exception): monai.VNet(spatial_dims=3, in_channels=3, out_channels=9)
    assert VNet(3, 9, features=4, kernel_size=3).eval()(torch.randn(1, 3, 16, 16, 16))['seg'].shape[1] == 9

def test_same_seed_same_weights_and_output():
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        net = BaseNet(3, 9).eval()
        outs.append(net(torch.ones(1, 3, 9, 16, 16))['seg'])
    assert torch.equal(*outs)
