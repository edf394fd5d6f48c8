"The brainseg command end to end, through the installed entry point, in a temporary folder."
import shutil, subprocess, sys
from pathlib import Path
import nibabel as nib
import pandas as pd
import pytest
from brainseg.phantom import write_phantom_dataset
from brainseg.cli import main

BRAINSEG = shutil.which('brainseg') or str(Path(sys.executable).parent / 'brainseg')

def run(*args, cwd=None):
    return subprocess.run([BRAINSEG, *map(str, args)], capture_output=True, text=True, cwd=cwd)

def test_train_predict_evaluate_round_trip(tmp_path):
    data = tmp_path / 'training'
    write_phantom_dataset(data, n=3, shape=(32, 32, 16))
    r = run('train', '--data', data, '--val-ids', '5', '--out', tmp_path / 'run', '--model', 'unet', '--features', '4',
            '--epochs', '1', '--iters-per-epoch', '3', '--batch-size', '2', '--eps', '0.1')
    assert r.returncode == 0, r.stderr
    assert "2 training subjects ['1', '4'], 1 validation ['5']" in r.stdout
    r = run('predict', data, '--model', tmp_path / 'run' / 'best.pt', '--out', tmp_path / 'pred')
    assert r.returncode == 0, r.stderr
    results = sorted(p.relative_to(tmp_path / 'pred') for p in (tmp_path / 'pred').rglob('result.nii.gz'))
    assert [str(p) for p in results] == ['1/result.nii.gz', '4/result.nii.gz', '5/result.nii.gz']
    assert nib.load(tmp_path / 'pred/5/result.nii.gz').shape == (32, 32, 16)
    r = run('evaluate', '--truth', data, '--pred', tmp_path / 'pred', '--out', tmp_path / 'scores')
    assert r.returncode == 0, r.stderr
    summary = pd.read_csv(tmp_path / 'scores' / 'summary.csv', index_col=0)
    assert list(summary.index) == ['G', 'B', 'WM', 'L', 'CSF', 'V', 'C', 'BS', 'mean']
    assert (summary['subjects'] == 3).all() and summary['dice'].between(0, 1).all()
    assert (tmp_path / 'scores' / 'dice.md').read_text().startswith('| subject |')

def test_cascade_from_the_command_line(tmp_path):
    r = run('train', '--data', 'phantom:3', '--size', '32x32x16', '--fold', '0/3', '--cascade', '--features', '4',
            '--epochs', '1', '--iters-per-epoch', '2', '--batch-size', '2', '--out', tmp_path / 'cas')
    assert r.returncode == 0, r.stderr
    assert (tmp_path / 'cas' / 'cascade.pt').is_file() and (tmp_path / 'cas' / 'folds.json').is_file()
    folders = write_phantom_dataset(tmp_path / 'data', n=1, shape=(32, 32, 16))
    r = run('predict', folders[0], '--model', tmp_path / 'cas' / 'cascade.pt', '--out', tmp_path / 'pred')
    assert r.returncode == 0, r.stderr
    assert (tmp_path / 'pred' / '1' / 'result.nii.gz').is_file()

def test_bad_arguments_are_messages_not_tracebacks(tmp_path, capsys):
    subject, = write_phantom_dataset(tmp_path / 'data', n=1, shape=(32, 32, 16))
    cases = [
        (['train', '--data', 'phantom:2', '--norm', 'layer'], "invalid choice: 'layer'"),
        (['train', '--data', tmp_path / 'nothing'], "dataset folder '"),
        (['train', '--data', 'phantom:2', '--size', '32x32', '--out', tmp_path], 'size must be three integers'),
        (['train', '--data', 'phantom:3', '--size', '32x32x16', '--fold', '3/3'], 'fold must be i/K'),
        (['predict', tmp_path, '--model', tmp_path / 'missing.pt', '--out', tmp_path / 'o'], 'no subjects found'),
        (['predict', subject, '--model', tmp_path / 'missing.pt', '--out', tmp_path / 'o'], "missing.pt' not found"),
        (['evaluate', '--truth', tmp_path, '--pred', tmp_path], "no ground truth '<id>/segm.nii.gz'"),
        (['demo', '--grid', 'nogrid', '--out', tmp_path / 'd'], "grid 'nogrid' is neither a built-in grid"),
        (['experiment', 'smoke', '--out', tmp_path / 'x', '--set', 'modle=unet'], "unknown parameters ['modle']"),
        (['experiment', 'smoke', '--out', tmp_path / 'x', '--set', 'epochs'], '--set expects KEY=VALUE'),
    ]
    for args, fragment in cases:  # in-process: the same `main` the entry point calls
        try: status = main([str(a) for a in args])
        except SystemExit as e: status = e.code  # argparse's own checks (choices) exit 2
        assert status == 2, args
        err = capsys.readouterr().err
        assert fragment in err, (args, err)
    r = run('frobnicate')  # through the installed entry point: argparse's own errors exit 2 without a traceback
    assert r.returncode == 2 and 'invalid choice' in r.stderr
    r = run('train', '--data', 'phantom:2', '--lr_', '1')
    assert r.returncode == 2 and 'unrecognized arguments: --lr_' in r.stderr

def test_a_bug_keeps_its_traceback(monkeypatch):
    "Only the user's errors become one-line messages: a KeyError from a bug is not printed as \"error: 'model'\"."
    import brainseg.cli as cli
    def broken(args): return {}['model']
    monkeypatch.setattr(cli, 'cmd_evaluate', broken)
    with pytest.raises(KeyError, match='model'): main(['evaluate', '--truth', '.', '--pred', '.'])

def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    folders = write_phantom_dataset(tmp_path / 'data', n=1, shape=(32, 32, 16))
    (tmp_path / 'best.pt').write_bytes(b'\x80\x04 not a checkpoint')
    r = run('predict', folders[0], '--model', tmp_path / 'best.pt', '--out', tmp_path / 'o')
    assert r.returncode == 2 and 'cannot be read' in r.stderr and 'Traceback' not in r.stderr
    assert not (tmp_path / 'o').exists()
    import torch
    torch.save({'format': 'brainseg-checkpoint-1', 'model': torch.nn.Linear(2, 2)}, tmp_path / 'pickled.pt')
    r = run('predict', folders[0], '--model', tmp_path / 'pickled.pt', '--out', tmp_path / 'o')
    assert r.returncode == 2 and 'holds Python objects' in r.stderr and 'torch.nn.modules.linear.Linear' in r.stderr
    assert 'weights_only=False' not in r.stderr and 'Traceback' not in r.stderr, r.stderr
    assert not (tmp_path / 'o').exists()

def test_help_explains_every_option():
    r = run('train', '--help')
    assert r.returncode == 0
    for fragment in ('--eps', 'FGSM step in z-score units', '--cls-weight', '--no-class-head', '--checkpoint-every',
                     '--fold'):
        assert fragment in r.stdout, fragment
    for cmd in ('predict', 'evaluate', 'demo'):
        assert run(cmd, '--help').returncode == 0
