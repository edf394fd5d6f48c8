"The brainseg command end to end, through the installed entry point."
import shutil, subprocess, sys
from pathlib import Path

BRAINSEG = shutil.which('brainseg') or str(Path(sys.executable).parent / 'brainseg')

def run(*args, cwd=None):
    return subprocess.run([BRAINSEG, *args], capture_output=True, text=True, cwd=cwd)

def test_demo_writes_dataset_and_figures(tmp_path):
    r = run('demo', '--out', str(tmp_path / 'out'), '--n', '2', '--size', '48x48x12')
    assert r.returncode == 0, r.stderr
    assert 'class volumes (ml)' in r.stdout
    assert sorted(p.name for p in (tmp_path / 'out').glob('*.png')) == ['subject_1.png', 'subject_4.png']
    assert (tmp_path / 'out/data/4/pre/reg_IR.nii.gz').is_file()

def test_bad_argument_is_a_message_not_a_traceback(tmp_path):
    r = run('demo', '--out', str(tmp_path), '--size', '48x48')
    assert r.returncode == 2 and 'Traceback' not in r.stderr
    assert "size must be three integers" in r.stderr
    r = run('frobnicate')
    assert r.returncode == 2 and 'invalid choice' in r.stderr

def test_help_explains_options():
    r = run('demo', '--help')
    assert r.returncode == 0 and '--size' in r.stdout and 'number of subjects' in r.stdout
