"""brainseg.cascade across modules: exact crops and merging with oracle stages, empty regions, borders, user cascades,
files, training data."""
import warnings
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from brainseg.cascade import (Cascade, CascadeFileError, OracleSlabs, OracleSlices, load_cascade, merge_stages,
                              region_crop, save_cascade, stage_items, stage_targets, with_oracles)
from brainseg.predict import predict_volume
from brainseg.data import preprocess, to_network_layout
from brainseg.samples import SlabDataset, SliceDataset, roi_presence
from brainseg.labels import COARSE_TO_FINE, IGNORE_INDEX, StageTask, label, training_target
from brainseg.models import BaseNet, UNet
from brainseg.phantom import make_phantom

torch.set_num_threads(1)
TINY = {'model_kwargs': {'features': 4}}
TWO_STAGE = (COARSE_TO_FINE[0],
             StageTask('cerebrum', (('G', ('G',)), ('B', ('B',)), ('WM', ('WM',)), ('L', ('L',)), ('V', ('V',))),
                       region='locating'))


# --- test doubles: perfect stage networks that read the label id from input channel 0 (brainseg.cascade) -----

def oracle_cascade(stages=COARSE_TO_FINE, kinds=(OracleSlices, OracleSlabs, OracleSlices), configs=None):
    return with_oracles(Cascade(stages, in_channels=1, configs=configs), kinds)

def as_input(labels_net):
    "A label map (Z, Y, X) as a one-channel 'image' for the oracles."
    return np.asarray(labels_net, np.float32)[None]

def expected(labels_net):
    "What a perfect cascade answers: infarction and 'other' become background."
    t = training_target(labels_net)
    return np.where(t == IGNORE_INDEX, 0, t)


@pytest.fixture(scope='module')
def pps():
    return [preprocess(make_phantom(k, (48, 48, 16))) for k in range(2)]


# --- exact crops, padding and merging ------------------------------------------------------------------------

@pytest.mark.parametrize('margins', [[{}, {}, {}], [{}, {'margin': 0}, {'margin': 0}],
                                     [{}, {'margin': (1, 2, 0)}, {'margin': (3, 0, 1)}]])
@pytest.mark.parametrize('kinds', [(OracleSlices, OracleSlabs, OracleSlices), (OracleSlabs, OracleSlices, OracleSlabs)])
def test_perfect_stages_give_the_truth_exactly(pps, margins, kinds):
    for p in pps:
        labels = to_network_layout(p.labels)
        out = oracle_cascade(kinds=kinds, configs=margins).predict(as_input(labels), return_stages=True)
        np.testing.assert_array_equal(out['labels'], expected(labels))
        assert all(r['probs'] is not None for r in out['stages'])
        # each later stage decided exactly its ground-truth region, inside its box
        for k in (1, 2):
            region = out['stages'][k]['region']
            members = COARSE_TO_FINE[k - 1].members(COARSE_TO_FINE[k].region)
            np.testing.assert_array_equal(region, np.isin(labels, members))
            (z0, z1), (y0, y1), (x0, x1) = out['stages'][k]['box']
            assert region[z0:z1, y0:y1, x0:x1].sum() == region.sum()


def test_image_smaller_than_the_multiples_is_padded_and_cropped_back():
    labels = to_network_layout(make_phantom(3, (30, 30, 6)).labels)  # 30 is no multiple of 4
    c = oracle_cascade(configs=[{}, {'margin': 20}, {}])  # the tissue box is the whole image, padded 30 -> 32
    out = c.predict(as_input(labels), return_stages=True)
    np.testing.assert_array_equal(out['labels'], expected(labels))
    crop = out['stages'][1]['crop']
    assert crop.box[1:] == ((0, 30), (0, 30)) and crop.pad[1:] == ((1, 1), (1, 1))


def test_region_at_the_border_is_clipped():
    labels = np.zeros((5, 16, 16), np.uint8)
    labels[:, :6, :3] = label('WM').id  # locating touches the first slice, top and left border
    labels[0, 0, 0] = label('V').id  # inner in the very corner
    labels[4, 10:, 12:] = label('CSF').id
    out = oracle_cascade(configs=[{}, {'margin': 4}, {'margin': (4, 4, 1)}]).predict(as_input(labels),
                                                                                      return_stages=True)
    np.testing.assert_array_equal(out['labels'], labels)
    assert (out['stages'][1]['box'][0][0] == 0 and out['stages'][1]['box'][1][0] == 0
            and out['stages'][1]['box'][2][0] == 0)
    # 1 voxel + margin (Z 1, in-plane 4), clipped; 5 -> 8 in-plane
    assert out['stages'][2]['box'] == ((0, 2), (0, 8), (0, 8))
    crop = region_crop(labels > 0, margin=(2, 2, 2), multiple=1)
    assert crop.box == ((0, 5), (0, 16), (0, 16)) and crop.pad == ((0, 0),) * 3


# --- empty regions -------------------------------------------------------------------------------------------

def test_no_brain_at_all_gives_background_and_skips_later_stages(pps):
    c = Cascade(configs=[TINY] * 3)
    with torch.no_grad(): c.nets[0].fuse_heads.bias[0] = 1e4  # stage 1 says 'rest' everywhere
    image = to_network_layout(pps[0].image)
    out = c.predict(image, return_stages=True)
    assert out['labels'].shape == image.shape[1:] and not out['labels'].any()
    assert [r['probs'] is None for r in out['stages']] == [False, True, True]
    assert [r['box'] for r in out['stages'][1:]] == [None, None]
    assert not out['stages'][1]['region'].any() and (out['stages'][1]['classes'] == -1).all()
    # an empty image through perfect stages
    np.testing.assert_array_equal(oracle_cascade().predict(np.zeros((1, 3, 8, 8), np.float32)), np.zeros((3, 8, 8)))


def test_no_inner_region(pps):
    labels = to_network_layout(pps[1].labels).copy()
    labels[np.isin(labels, label_ids := [label('B').id, label('V').id])] = label('WM').id
    out = oracle_cascade().predict(as_input(labels), return_stages=True)
    np.testing.assert_array_equal(out['labels'], expected(labels))
    assert out['stages'][2]['probs'] is None and not out['stages'][2]['region'].any()
    assert not np.isin(out['labels'], label_ids).any()


def test_slice_without_brain_inside_a_volume(pps):
    labels = to_network_layout(pps[0].labels).copy()
    labels[3] = 0  # one slice of nothing, inside the boxes
    np.testing.assert_array_equal(oracle_cascade().predict(as_input(labels)), expected(labels))


# --- merge precedence ----------------------------------------------------------------------------------------

def _probs(best, second, n):
    v = np.arange(len(best))
    p = np.full((n, len(best)), 0.1 / (n - 2), np.float32)
    p[best, v], p[second, v] = 0.6, 0.3
    return p.reshape(n, 1, 1, -1)

def test_rest_fallbacks_are_configurable():
    stage1 = _probs([3, 4, 4], [4, 2, 0], 5)  # CSF, locating (then C), locating
    stage2 = _probs([0, 0, 1], [1, 2, 2], 5)  # -, rest (then WM), G
    own = merge_stages(COARSE_TO_FINE, [stage1, stage2, None], [None, 'own', 'previous'])
    assert own['labels'][0, 0].tolist() == [label('CSF').id, label('WM').id, label('G').id]
    previous = merge_stages(COARSE_TO_FINE, [stage1, stage2, None], [None, 'previous', 'previous'])
    # stage 1's best but locating
    assert previous['labels'][0, 0].tolist() == [label('CSF').id, label('C').id, label('G').id]
    assert (previous['stages'][0]['classes'][0, 0].tolist() == [3, 2, 4]
            and previous['stages'][1]['classes'][0, 0].tolist() == [-1, -1, 1])
    c = Cascade(configs={'tissue': {'rest_fallback': 'previous'}, 'locate': TINY, 'inner': TINY})
    assert [cfg.rest_fallback for cfg in c.configs] == [None, 'previous', 'previous']
    with pytest.raises(ValueError, match="rest_fallback must be one of"):
        Cascade(configs={'inner': {'rest_fallback': 'best'}})


def test_merge_checks_probability_shapes():
    with pytest.raises(ValueError, match=r"stage 1 \('tissue'\): expected probabilities \(5, 1, 1, 3\), "
                                         r"found shape \(3, 1, 1, 3\)"):
        merge_stages(COARSE_TO_FINE, [_probs([4, 4, 4], [0, 0, 0], 5), np.ones((3, 1, 1, 3)), None])


# --- user-defined cascades -----------------------------------------------------------------------------------

def test_two_stage_cascade(pps, tmp_path):
    labels = to_network_layout(pps[0].labels)
    np.testing.assert_array_equal(oracle_cascade(TWO_STAGE, (OracleSlabs, OracleSlices)).predict(as_input(labels)),
                                  expected(labels))
    c = Cascade(TWO_STAGE, configs=[TINY, {'model': 'unet', 'model_kwargs': {'features': (4, 8)}}])
    assert c.nets[1].ups[0][0].out_channels == 6 and c.configs[1].rest_fallback == 'own'
    image = to_network_layout(pps[0].image)
    out = c.predict(image, return_stages=True)
    assert out['labels'].shape == image.shape[1:] and len(out['stages']) == 2
    np.testing.assert_array_equal(load_cascade(save_cascade(c, tmp_path / 'two.pt')).predict(image), out['labels'])
    items = c.training_items(pps, 1)
    assert [i.stage for i in items] == ['cerebrum', 'cerebrum']
    batch = SlabDataset(items[:1], k=9, margin=4, **stage_targets(TWO_STAGE[1]))[0]
    assert batch['roi'].shape == (1, 5) and int(batch['target'].max()) <= 5


def test_bad_cascades():
    with pytest.raises(ValueError, match='No stage resolves'): Cascade(COARSE_TO_FINE[:2])
    with pytest.raises(ValueError, match='stage names must be distinct'):
        Cascade((COARSE_TO_FINE[0], StageTask('locate', TWO_STAGE[1].classes, region='locating')))
    with pytest.raises(ValueError, match="got 2 stage configs for 3 stages"): Cascade(configs=[{}, {}])
    with pytest.raises(ValueError,
                       match=r"stage 'inner': model must be one of \['base', 'unet', 'vnet'\], found 'resnet'"):
        Cascade(configs={'inner': {'model': 'resnet'}})
    with pytest.raises(ValueError,
                       match=r"expected a volume \(3, Z, Y, X\) in network layout, found shape \(1, 4, 8, 8\)"):
        Cascade(configs=[TINY] * 3).predict(np.zeros((1, 4, 8, 8)))


# --- per-stage outputs ---------------------------------------------------------------------------------------

def test_per_stage_outputs(pps):
    c = Cascade(configs=[TINY, TINY, {'model': 'vnet', 'model_kwargs': {'features': 2, 'kernel_size': 3}}])
    with torch.no_grad():
        c.nets[0].fuse_heads.bias[4] = 1e4  # locating everywhere
        c.nets[1].fuse_heads.bias[4] = 1e4  # inner everywhere
    image = torch.from_numpy(to_network_layout(pps[0].image))
    out = c.predict(image, return_stages=True)
    grid = tuple(image.shape[1:])
    assert set(out) == {'labels', 'stages'} and out['labels'].dtype == np.uint8 and out['labels'].shape == grid
    for st, r in zip(c.stages, out['stages']):
        assert set(r) == {'name', 'region', 'classes', 'probs', 'box', 'crop'} and r['name'] == st.name
        assert r['probs'].shape == (st.n_classes, *grid) and r['probs'].dtype == np.float32
        assert r['region'].dtype == bool and r['classes'].dtype == np.int16 and r['region'].shape == grid
        assert not (r['classes'] >= 0)[~r['region']].any()  # a stage decides only inside its region
    assert out['stages'][1]['region'].all() and out['stages'][2]['box'] == tuple((0, n) for n in grid)
    assert set(np.unique(out['labels'])) <= {label('B').id, label('V').id, label('WM').id, label('G').id, label('L').id}
    partial = c.predict(image, n_stages=2, return_stages=True)
    assert partial['stages'][2]['probs'] is None and (partial['labels'] == IGNORE_INDEX).all()  # all left to stage 3


# --- predict_volume ------------------------------------------------------------------------------------------

def test_predict_volume_matches_the_networks():
    torch.manual_seed(1)
    unet = UNet(2, 3, features=(4, 8)).eval()
    x = torch.randn(2, 5, 16, 12)
    with torch.no_grad(): direct = unet(x.transpose(0, 1))['seg'].softmax(1).transpose(0, 1)
    np.testing.assert_allclose(predict_volume(unet, x, batch_size=2), direct.numpy(), atol=1e-5)
    base = BaseNet(2, 3, features=4).eval()
    with torch.no_grad(): zeros = base(F.pad(x, (0, 0, 0, 0, 4, 4))[None])['seg'][0].softmax(0)
    np.testing.assert_allclose(predict_volume(base, x, pad='constant', slab=2), zeros.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="pad must be 'replicate' or 'constant'"):
        predict_volume(base, x, pad='reflect')


# --- files ---------------------------------------------------------------------------------------------------

def _running_cascade():
    torch.manual_seed(0)
    c = Cascade(configs=[TINY, TINY, {'model': 'unet', 'model_kwargs': {'features': (4, 8)}, 'margin': (2, 2, 1),
                                      'eps': 0.05}])
    with torch.no_grad():  # some locating, some inner
        c.nets[0].fuse_heads.bias[4] = 2.0; c.nets[1].fuse_heads.bias[4] = 1.0
    return c

def test_save_load_identical_predictions(pps, tmp_path):
    c = _running_cascade()
    image = to_network_layout(pps[1].image)
    before = c.predict(image, return_stages=True)
    assert all(r['probs'] is not None for r in before['stages'])
    path = save_cascade(c, tmp_path / 'sub' / 'cascade.pt')
    assert sorted(p.name for p in path.parent.iterdir()) == ['cascade.pt']  # no temporary file left
    payload = torch.load(path, weights_only=True)
    assert payload['stages'][1] == {'name': 'tissue',
                                    'classes': [['G', ['G']], ['WM', ['WM']], ['L', ['L']], ['inner', ['B', 'V']]],
                                    'region': 'locating'}
    again = load_cascade(path)
    assert again.configs == c.configs and again.configs[2].eps == 0.05 and again.stages == c.stages
    after = again.predict(image, return_stages=True)
    np.testing.assert_array_equal(after['labels'], before['labels'])
    for a, b in zip(after['stages'], before['stages']): np.testing.assert_array_equal(a['probs'], b['probs'])


def test_bad_cascade_files(tmp_path):
    c = _running_cascade()
    path = save_cascade(c, tmp_path / 'c.pt')
    with pytest.raises(FileNotFoundError, match="cascade file '.*nowhere.pt' not found"):
        load_cascade(tmp_path / 'nowhere.pt')
    (tmp_path / 'cut.pt').write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    with pytest.raises(CascadeFileError, match=r"cascade file '.*cut.pt' cannot be read"):
        load_cascade(tmp_path / 'cut.pt')
    (tmp_path / 'text.pt').write_text('hello')
    with pytest.raises(CascadeFileError, match='cannot be read'): load_cascade(tmp_path / 'text.pt')
    torch.save([1, 2], tmp_path / 'list.pt')
    with pytest.raises(CascadeFileError, match="expected format 'brainseg.cascade/1', found 'list'"):
        load_cascade(tmp_path / 'list.pt')
    payload = torch.load(path, weights_only=True)
    payload['configs'][1] = {**payload['configs'][1], 'model_kwargs': {'features': 8}}
    torch.save(payload, tmp_path / 'mismatch.pt')
    with pytest.raises(CascadeFileError, match=r"stage 1 \('tissue'\): the weights do not fit its 'base' network"):
        load_cascade(tmp_path / 'mismatch.pt')
    payload = torch.load(path, weights_only=True)
    payload['stages'][2]['region'] = 'nowhere'
    torch.save(payload, tmp_path / 'stages.pt')
    with pytest.raises(CascadeFileError, match="describes no valid cascade: ValueError: Stage 2"):
        load_cascade(tmp_path / 'stages.pt')
    payload = torch.load(path, weights_only=True)
    payload['configs'][0]['lr'] = 1.0
    torch.save(payload, tmp_path / 'keys.pt')
    with pytest.raises(CascadeFileError, match="stage 'locate': unknown config key: lr; valid keys: model,"):
        load_cascade(tmp_path / 'keys.pt')


# --- training data of the stages -----------------------------------------------------------------------------

def test_training_items_from_truth_and_predictions(pps):
    c = Cascade(configs=[TINY, {**TINY, 'margin': (2, 2, 1), 'jitter': 2}, {**TINY, 'boxes': 'predicted', 'margin': 1}])
    items = c.training_items(pps, 1, seed=0)
    for p, item in zip(pps, items):
        region = np.isin(p.labels, COARSE_TO_FINE[0].members('locating'))
        assert np.isin(item.labels, COARSE_TO_FINE[0].members('locating')).sum() == region.sum()  # whole region inside
        assert item.image.shape[1] % 4 == 0 and item.image.shape[2] % 4 == 0
        inside = item.invert(np.ones(item.labels.shape, np.uint8)) > 0
        np.testing.assert_array_equal(item.invert(item.labels)[inside], p.invert(p.labels)[inside])
    assert [i.region_crop for i in c.training_items(pps, 1, seed=0)] == [i.region_crop for i in items]
    assert [i.region_crop for i in c.training_items(pps, 1, seed=1)] != [i.region_crop for i in items]
    with torch.no_grad():  # predicts inner everywhere
        c.nets[0].fuse_heads.bias[4] = 1e4; c.nets[1].fuse_heads.bias[4] = 1e4
    predicted = c.training_items(pps[:1], 2)
    assert predicted[0].region_crop.box == tuple((0, n) for n in pps[0].labels.shape)  # the predicted box: everything
    with torch.no_grad(): c.nets[1].fuse_heads.bias[4] = -1e4  # predicts no inner: ground-truth box, with a warning
    with pytest.warns(UserWarning, match="region is empty; stage 'inner' uses its ground-truth box"):
        fallback = c.training_items(pps[:1], 2)
    assert fallback[0].region_crop == stage_items(pps[:1], COARSE_TO_FINE, 2, margin=1,
                                                  multiple=(4, 4, 1))[0].region_crop


def test_stage_items_lead_back_to_the_subject_grid():
    "Items of a subject cropped and padded by preprocessing: their crop goes from the subject's grid to theirs exactly."
    subject = make_phantom(7, (64, 64, 16))
    p = preprocess(subject, margin=(1, 1, 0), multiple=(16, 16, 1))
    assert any(a or b for a, b in p.crop.pad)  # the preprocessed grid is padded
    for k, margin in ((1, (20, 20, 2)), (1, 0), (2, (3, 1, 0))):
        item = stage_items([p], COARSE_TO_FINE, k, margin=margin, multiple=(8, 8, 1))[0]
        np.testing.assert_array_equal(item.crop.apply(subject.labels), item.labels)
        np.testing.assert_array_equal(item.crop.apply(subject.stack()) != 0, item.image != 0)
        back = item.invert(item.labels)
        inside = item.invert(np.ones(item.labels.shape, np.uint8)) > 0
        np.testing.assert_array_equal(back[inside], subject.labels[inside])
        assert not back[~inside].any()
        region = np.isin(subject.labels, COARSE_TO_FINE[k - 1].members(COARSE_TO_FINE[k].region))
        assert inside[region].all()


def test_stage_items_feed_the_datasets(pps):
    st = COARSE_TO_FINE[2]
    items = stage_items(pps, COARSE_TO_FINE, 2, margin=(4, 4, 1), multiple=(4, 4, 1))
    slices = SliceDataset(items, **stage_targets(st))
    loader = DataLoader(slices, batch_size=1)
    batch = next(iter(loader))
    assert batch['roi'].shape == (1, 2) and batch['image'].shape[1] == 3
    for i in range(len(slices)):
        s = slices[i]
        assert set(s['target'].unique().tolist()) <= {0, 1, 2, IGNORE_INDEX}
        np.testing.assert_array_equal(s['roi'], roi_presence(s['target'], (1, 2)))
    assert slices.presence.any(0).all()  # both B and V appear somewhere


def test_subject_without_the_region_is_left_out(pps):
    p = preprocess(make_phantom(5, (48, 48, 16)))
    p.labels[np.isin(p.labels, [label('B').id, label('V').id])] = label('WM').id
    with pytest.warns(UserWarning, match="has no 'inner' voxels: left out of stage 'inner'"):
        items = stage_items([p, pps[0]], COARSE_TO_FINE, 2)
    assert [i.id for i in items] == [pps[0].id]
    with pytest.raises(ValueError, match="no subject has a 'inner' region"), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        stage_items([p], COARSE_TO_FINE, 2)


# --- a briefly trained cascade (train_cascade, ~15 s on 1 thread) --------------------------------------------

def test_briefly_trained_cascade_beats_the_majority_baseline(tmp_path):
    from brainseg.train import TrainConfig, train_cascade
    subject = make_phantom(0, (64, 64, 16))
    cfg = TrainConfig(features=8, slab=13, epochs=1, iters_per_epoch=40, batch_size=2, lr=3e-3, augment='none',
                      class_aware=False, norm='batch')
    c = train_cascade(cfg, [subject], out=tmp_path, stage_configs=[{'margin': (4, 4, 1)}] * 3, log=lambda *a: None,
                      progress=False)
    pp = preprocess(subject)
    pred = c.predict(to_network_layout(pp.image))
    truth = to_network_layout(training_target(pp.labels))
    valid = truth != IGNORE_INDEX
    accuracy, majority = (pred == truth)[valid].mean(), (truth == 0)[valid].mean()
    wm = label('WM').id
    dice_wm = 2 * ((pred == wm) & (truth == wm)).sum() / ((pred == wm).sum() + (truth == wm).sum())
    assert accuracy > majority + 0.05, (accuracy, majority)
    assert dice_wm > 0.6, dice_wm
