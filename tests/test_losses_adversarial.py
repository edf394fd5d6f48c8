"Losses against an independent computation (MONAI), and the FGSM properties the training relies on."
import pytest
import torch
from brainseg.labels import IGNORE_INDEX
from brainseg.losses import SegLoss, JointLoss
from brainseg.adversarial import fgsm, mix_adversarial, pgd
from brainseg.models import BaseNet

def test_seg_loss_matches_monai_dice_ce():
    import monai.losses as monai_losses  # a dev requirement: its absence fails `make test`
    torch.manual_seed(0)
    logits, target = torch.randn(3, 5, 6, 7), torch.randint(0, 5, (3, 6, 7))
    ref = monai_losses.DiceCELoss(to_onehot_y=True, softmax=True, batch=True)(logits, target[:, None])
    torch.testing.assert_close(SegLoss()(logits, target), ref)

def test_ignored_voxels_change_nothing():
    torch.manual_seed(1)
    logits, target = torch.randn(2, 4, 5, 5), torch.randint(0, 4, (2, 5, 5))
    noisy_logits, masked = logits.clone(), target.clone()
    masked[:, 0] = IGNORE_INDEX; noisy_logits[:, :, 0] = 100 * torch.randn(2, 4, 5)
    torch.testing.assert_close(SegLoss()(noisy_logits[:, :, 1:], target[:, 1:]), SegLoss()(noisy_logits, masked))

@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = BaseNet(2, 4, features=4).train()
    x = torch.randn(2, 2, 9, 8, 8)
    batch = {'image': x, 'target': torch.randint(0, 4, (2, 1, 8, 8)), 'roi': torch.randint(0, 2, (2, 1, 8)).float()}
    return model, x, batch, JointLoss(cls_weight=0.5)

def test_fgsm_is_the_formula(setup):
    model, x, batch, loss_fn = setup
    x_adv = fgsm(model, x, batch, loss_fn, eps=0.05)
    # independent computation: a copy of the model, plain backward
    twin = BaseNet(2, 4, features=4); twin.load_state_dict(model.state_dict()); twin.train()
    xr = x.clone().requires_grad_(True)
    loss_fn(twin(xr), batch)[0].backward()
    torch.testing.assert_close(x_adv, x + 0.05 * xr.grad.sign())

def test_attack_leaves_model_untouched(setup):
    model, x, batch, loss_fn = setup
    loss_fn(model(x), batch)[0].backward()  # some existing grads, as mid-step in training
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    fgsm(model, x, batch, loss_fn, eps=0.1); pgd(model, x, batch, loss_fn, eps=0.1, steps=3)
    for k, v in model.state_dict().items(): assert torch.equal(v, state[k]), k  # params and BN buffers
    for n, p in model.named_parameters(): assert torch.equal(p.grad, grads[n]), n
    assert model.training

def test_attack_increases_loss(setup):
    model, x, batch, loss_fn = setup
    model.eval()
    with torch.no_grad(): clean = loss_fn(model(x), batch)[0]
    for x_adv in (fgsm(model, x, batch, loss_fn, 0.1), pgd(model, x, batch, loss_fn, 0.1, steps=5)):
        with torch.no_grad(): assert loss_fn(model(x_adv), batch)[0] > clean
        assert (x_adv - x).abs().max() <= 0.1 + 1e-6

def test_mixing_is_deterministic_by_seed(setup):
    model, x, batch, loss_fn = setup
    run = lambda s: mix_adversarial(model, batch, loss_fn, 0.1, 0.5, generator=torch.Generator().manual_seed(s))
    a, b = run(7), run(7)
    assert torch.equal(a['image'], b['image']) and torch.equal(a['adversarial'], b['adversarial'])
    assert a['adversarial'].sum() == 1

def test_fgsm_mask_keeps_background(setup):
    model, x, batch, loss_fn = setup
    mask = torch.zeros_like(x[:, :1]); mask[..., 2:6, 2:6] = 1
    d = fgsm(model, x, batch, loss_fn, 0.1, mask=mask) - x
    assert d[..., :2, :].abs().max() == 0 and torch.allclose(d[..., 2:6, 2:6].abs(), torch.tensor(0.1))
