"The widget viewers driven from Python, as a user's clicks would: images change, Dice and colours are right."
import contextlib, io, json, re
import numpy as np
import PIL.Image
import pytest
from brainseg.cli import main
from brainseg.infer import write_result
from brainseg.io import SubjectError, save_nifti, write_mrbrains_subject
from brainseg.labels import IGNORE, SCORED, label
from brainseg.metrics import dice, score_subject
from brainseg.phantom import make_phantom
from brainseg.viewer import (ERROR_COLOURS, ResultsBrowser, compare_viewer, find_runs, read_prediction, subject_viewer)

@pytest.fixture(scope='module')
def ph():
    return make_phantom(0)

def pixels(image) -> np.ndarray:
    "The RGB pixels a browser would show for an `ipywidgets.Image`."
    return np.asarray(PIL.Image.open(io.BytesIO(image.value)).convert('RGB')).astype(int)

def has_colour(image, rgb) -> bool:
    "Whether some pixel has this colour (RGB in 0..1), to one grey level per channel."
    return bool((np.abs(pixels(image) - np.asarray(rgb) * 255).max(-1) <= 1).any())

def test_every_control_redraws(ph):
    v = subject_viewer(ph)
    seen = {bytes(v.images['labels', 'axial'].value)}
    for control, value in [(v.position[2], 6), (v.position[0], 28), (v.modality, 'FLAIR'), (v.contrast, (10.0, 60.0)),
                           (v.opacity, 0.9), (v.show_labels, False), (v.crosshair, False), (v.zoom, 3)]:
        control.value = value
        image = bytes(v.images['labels', 'axial'].value)
        assert image not in seen, f"{control.description} = {value!r} did not change the axial image"
        seen.add(image)

def test_one_cursor_for_all_planes(ph):
    v = subject_viewer(ph)
    before = {k: im.value for k, im in v.images.items()}
    v.position[2].value = 2  # a new axial slice: the axial image, and the crosshair in the other two, move
    assert all(v.images[k].value != before[k] for k in before)

def test_toggled_off_structure_leaves_no_pixel_of_its_colour(ph):
    v = subject_viewer(ph)
    v.opacity.value = 1.0  # the colour is then exact
    v.contrast.value, v.crosshair.value = (100.0, 100.0), False  # a black image: WM's near-white is not an intensity
    for k in SCORED:
        plane_k = [z for z in range(ph.shape[2]) if (ph.labels[:, :, z] == k).any()]
        if not plane_k: continue
        v.position[2].value = plane_k[len(plane_k) // 2]
        image = v.images['labels', 'axial']
        assert has_colour(image, label(k).colour), label(k).code
        v.toggles[k].value = False
        assert not has_colour(image, label(k).colour), label(k).code
        v.toggles[k].value = True

def test_label_layer_off_is_grey(ph):
    v = subject_viewer(ph)
    v.crosshair.value, v.show_labels.value = False, False
    p = pixels(v.images['labels', 'coronal'])
    assert (p[..., 0] == p[..., 1]).all() and (p[..., 1] == p[..., 2]).all()

def test_shown_slice_dice_is_metrics_dice(ph):
    "Per slice: `metrics.dice` on that slice; per subject: the official score (ignore labels removed, as there)."
    pred = np.roll(ph.labels, 2, axis=0)
    v = compare_viewer(ph, {'shifted': pred})
    official = score_subject(ph, pred).set_index('code')['dice']
    pred = np.where(np.isin(ph.labels, IGNORE), 0, pred)  # what the official scoring compares
    for z in (5, 8, 11):
        v.position[2].value = z
        for code in ('WM', 'G', 'V'):
            v.structure.value = code
            k = label(code).id
            shown = re.search(r'slice ([0-9.]+|n/a)', v.titles['shifted', 'axial'].value).group(1)
            expected = dice(ph.labels[:, :, z] == k, pred[:, :, z] == k)
            assert shown == ('n/a' if np.isnan(expected) else f"{expected:.3f}"), (z, code)
            subject = re.search(r'subject ([0-9.]+)', v.titles['shifted', 'axial'].value).group(1)
            assert subject == f"{official[code]:.3f}"

def test_error_and_difference_views(ph):
    v = compare_viewer(ph, {'shifted': np.roll(ph.labels, 2, axis=0), 'same': ph.labels})
    v.modes['shifted'].value = 'errors'
    image = v.images['shifted', 'axial']
    assert has_colour(image, ERROR_COLOURS[2][:3]) and has_colour(image, ERROR_COLOURS[3][:3])  # FP and FN
    v.modes['same'].value = 'errors'  # a perfect prediction: no false positive or negative anywhere
    assert not has_colour(v.images['same', 'axial'], ERROR_COLOURS[2][:3])
    v.difference.value = ('shifted', 'same')
    assert len(v.images) == 4 and 'only B right' in v.legend.value

def test_zoom_and_fit_structure(ph):
    v = compare_viewer(ph, {'same': ph.labels})
    full = v.rendered['truth', 'axial'].shape
    v.structure.value = 'V'
    v.fit_structure()
    box = np.argwhere(ph.labels == label('V').id)
    assert v.box is not None and all(lo <= c for lo, c in zip(np.array(v.box)[:, 0], box.min(0)))
    assert v.rendered['truth', 'axial'].shape[0] <= full[0]  # the box is drawn at its own aspect
    v.zoom.value = 2  # a zoom step leaves the box
    assert v.box is None

def test_static_fallback(ph):
    bundle = subject_viewer(ph)._repr_mimebundle_()
    assert 'application/vnd.jupyter.widget-view+json' in bundle and len(bundle['image/png']) > 1000

def test_bad_maps_fail_clearly(ph):
    with pytest.raises(SubjectError, match=r"'short': labels have shape \(64, 64, 8\), the subject's grid is"):
        compare_viewer(ph, {'short': ph.labels[:, :, :8]})
    bad = ph.labels.copy()
    bad[3, 3, 3] = 11
    with pytest.raises(SubjectError, match=r"must lie in 0..10, found \[11\]"):
        compare_viewer(ph, {'bad': bad})

@pytest.fixture
def results(tmp_path):
    "A demo-like results folder: ground truth in data/, two runs with params.json, one bad prediction."
    subjects = [make_phantom(k) for k in range(2)]
    for s in subjects: write_mrbrains_subject(s, tmp_path / 'data')
    for config, shift in (('unet', 1), ('vnet', 3)):
        run = tmp_path / 'runs' / f'{config}-0a1b'
        run.mkdir(parents=True)
        (run / 'params.json').write_text(json.dumps({'config': config}))
        for s in subjects: write_result(np.roll(s.labels, shift, axis=0), s, run / 'predictions')
    return tmp_path, subjects

def test_results_browser(results):
    folder, subjects = results
    assert sorted(find_runs(folder)) == ['unet', 'vnet']
    rb = ResultsBrowser(folder)
    assert rb.subject_picker.options == ('phantom0', 'phantom1') and rb.message.value == ''
    assert set(rb.viewer.modes) == {'unet', 'vnet'}
    rb.run_picker.value = ('vnet',)
    assert set(rb.viewer.modes) == {'vnet'}

def test_results_browser_shows_problems_without_raising(results):
    folder, (s0, s1) = results
    pred = folder / 'runs' / 'unet-0a1b' / 'predictions' / s1.id / 'result.nii.gz'
    moved = s1.affine.copy()
    moved[0, 3] += 5
    save_nifti(s1.labels, moved, pred)
    rb = ResultsBrowser(folder)
    rb.subject_picker.value = s1.id
    assert rb.viewer is None and "prediction affine differs from the subject's by up to 5 mm" in rb.message.value
    save_nifti(np.full(s1.shape, 14, np.uint8), s1.affine, pred)
    rb.subject_picker.value = s0.id
    rb.subject_picker.value = s1.id
    assert rb.viewer is None and 'must lie in 0..10, found [14]' in rb.message.value
    with pytest.raises(SubjectError, match='prediction has shape'):
        save_nifti(s1.labels[:, :, :4], s1.affine, pred)
        read_prediction(pred, s1)

def test_view_command_errors(results, tmp_path_factory):
    folder, _ = results
    empty = tmp_path_factory.mktemp('empty')
    for argv, message in [(['view', str(empty)], "no runs under"),
                          (['view', str(folder / 'runs')], "no ground truth for the predictions"),
                          (['view', str(folder), '--data', str(empty)], "no subjects found in")]:
        with contextlib.redirect_stderr(io.StringIO()) as err: assert main(argv) == 2
        assert f"brainseg view: error: {message}" in err.getvalue() and 'Traceback' not in err.getvalue(), argv

def test_demo_viewer_notebook_executes(results):
    "The demo's viewer.ipynb, run in a kernel from a results folder: the browser, with a PNG for static renderers."
    import nbformat
    from nbclient import NotebookClient
    from brainseg.cli import VIEWER_NOTEBOOK
    folder, _ = results
    (folder / 'results.csv').write_text('model,dice\nunet,0.5\n')
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(s) if t == 'markdown'
                                         else nbformat.v4.new_code_cell(s) for t, s in VIEWER_NOTEBOOK])
    NotebookClient(nb, timeout=120, kernel_name='python3', resources={'metadata': {'path': str(folder)}}).execute()
    data = nb.cells[-1].outputs[0]['data']
    assert 'application/vnd.jupyter.widget-view+json' in data and len(data['image/png']) > 1000
