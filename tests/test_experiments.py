"""Grids of papermill runs end to end: runs, skips finished ones, records failures, collects;
bad grids fail before anything runs."""
import json, shutil, subprocess, sys
from pathlib import Path
import pandas as pd
import papermill
import pytest
from brainseg.experiments import run_grid, notebook_path
from brainseg.results import write_report, load_results

TINY = dict(data='phantom:4', size='32x32x16', folds=2, epochs=1, iters_per_epoch=2, batch_size=2, augment='none',
            modalities=['T1'])

def tiny_grid(**configs) -> dict:
    return {'name': 'tiny', 'configs': configs, 'axes': {'fold': [0, 1]}, 'base': TINY}

@pytest.fixture(scope='module')
def finished(tmp_path_factory):
    "A grid of 4 runs, one made to fail in its notebook (held-out ids that are not in the data), run once."
    out = tmp_path_factory.mktemp('grid')
    grid = tiny_grid(unet={'model': 'unet', 'features': 4},
                     broken={'model': 'unet', 'features': 4, 'val_ids': 'nobody'})
    lines = []
    status = run_grid(grid, out, log=lines.append)
    return grid, out, status, lines

def test_runs_end_to_end_and_failures_are_recorded(finished):
    grid, out, status, lines = finished
    assert list(status['config']) == ['unet', 'broken', 'unet', 'broken']
    assert list(status['status']) == ['done', 'failed', 'done', 'failed']
    for run in status['run'][::2]:
        folder = out / run
        res = json.loads((folder / 'result.json').read_text())
        assert (folder / 'run.ipynb').is_file() and (folder / 'params.json').is_file()
        assert res['params']['config']['model'] == 'unet' and len(res['scores']) == 2 * 8
        assert len(list(folder.glob('predictions/*/result.nii.gz'))) == 2
        assert res['versions']['brainseg']
    failed = json.loads((out / status['run'][1] / 'failed.json').read_text())
    assert failed['ename'] == 'ValueError' and "held-out ids ['nobody']" in failed['evalue']
    assert isinstance(failed['cell_index'], int)
    assert any(l.startswith('[4/4]') and 'ETA' in l for l in lines)

def test_the_executed_notebook_has_no_progress_bars(finished):
    _, out, status, _ = finished
    text = (out / status['run'][0] / 'run.ipynb').read_text()
    assert 'it/s' not in text and 'epoch 1/1' not in text

def test_a_second_call_skips_finished_and_failed_runs(finished):
    grid, out, status, _ = finished
    before = {r: (out / r / 'run.ipynb').stat().st_mtime_ns for r in status['run']}
    lines = []
    again = run_grid(grid, out, log=lines.append)
    assert list(again['status']) == list(status['status'])
    assert {r: (out / r / 'run.ipynb').stat().st_mtime_ns for r in status['run']} == before
    assert '0 to run' in lines[0]

def test_retry_failed_runs_them_again(finished, tmp_path):
    grid, out, status, _ = finished
    copy = tmp_path / 'copy'
    shutil.copytree(out, copy)
    lines = []
    again = run_grid(grid, copy, retry_failed=True, log=lines.append)
    assert '2 to run' in lines[0] and list(again['status']) == ['done', 'failed', 'done', 'failed']

def test_collected_table_has_a_row_per_run_subject_and_structure(finished):
    grid, out, status, _ = finished
    long = load_results(out)
    assert len(long) == 2 * 2 * 8  # 2 finished runs x 2 held-out subjects x 8 structures
    assert set(long['config']) == {'unet'} and sorted(long['fold'].unique()) == [0, 1]
    assert long['subject'].nunique() == 4  # the two folds hold out different subjects
    tables = write_report(out)
    assert tables['dice'].loc['unet', ('runs', 'n')] == 2
    assert (out / 'summary.md').is_file() and (out / 'dice_by_config.png').stat().st_size > 0
    assert pd.read_csv(out / 'results.csv').shape[0] == len(long)

@pytest.mark.parametrize('grid, fragment', [
    (tiny_grid(unet={'model': 'unet', 'learning_rate': 1}), "unknown parameters ['learning_rate']"),
    ({'name': 'empty', 'configs': {}}, 'names no configurations'),
    ({'name': 'noaxis', 'configs': {'a': {}}, 'axes': {'fold': []}}, 'non-empty list'),
    (tiny_grid(unet={'model': 'resnet'}), "model must be one of ['base', 'unet', 'vnet'], found 'resnet'"),
])
def test_bad_grids_fail_before_anything_runs(tmp_path, grid, fragment):
    with pytest.raises(ValueError, match=None) as e: run_grid(grid, tmp_path / 'out')
    assert fragment in str(e.value)
    assert not (tmp_path / 'out').exists()

def test_a_folder_of_another_grid_is_refused(finished, tmp_path):
    grid, out, _, _ = finished
    other = {**grid, 'configs': {'vnet': {'model': 'vnet'}}}
    with pytest.raises(ValueError, match="holds runs of another grid"): run_grid(other, out)
    (tmp_path / 'stuff').mkdir(); (tmp_path / 'stuff' / 'x.txt').write_text('mine')
    with pytest.raises(ValueError, match='not empty and holds no grid.json'): run_grid(grid, tmp_path / 'stuff')
    assert (tmp_path / 'stuff' / 'x.txt').read_text() == 'mine'

def test_a_missing_notebook_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match='run notebook'):
        run_grid(tiny_grid(a={}), tmp_path / 'o', notebook='nowhere')
    assert not (tmp_path / 'o').exists()

def test_parameters_cell_survives_nbdev_clean(tmp_path):
    nb = tmp_path / 'train.ipynb'
    shutil.copy(notebook_path('train'), nb)
    shutil.copy(Path(__file__).parent.parent / 'settings.ini', tmp_path / 'settings.ini')
    r = subprocess.run([str(Path(sys.executable).parent / 'nbdev_clean'), '--fname', str(nb)], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    params = papermill.inspect_notebook(str(nb))
    assert {'model', 'eps', 'cascade', 'class_head', 'fold', 'seed', 'out', 'config'} <= set(params)

def test_run_notebook_defaults_are_the_library_defaults():
    "The notebook's parameters cell must not silently change a training default (only the budget is tiny there)."
    import ast, dataclasses
    from brainseg.train import TrainConfig
    tiny_budget = {'model', 'class_head', 'epochs', 'iters_per_epoch', 'batch_size'}
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    params = papermill.inspect_notebook(str(notebook_path('train')))
    for name, p in params.items():
        if name in defaults and name not in tiny_budget:
            value = ast.literal_eval(p['default'])
            same = value == defaults[name] or (isinstance(value, list) and tuple(value) == defaults[name])
            assert same, (name, value, defaults[name])
