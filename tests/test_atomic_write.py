"Fault injection: a writer killed at any moment never leaves a partial file under the final name."
import signal, subprocess, sys, textwrap, time
import numpy as np
import nibabel as nib
import pytest
from brainseg.io import save_nifti

WRITER = textwrap.dedent('''
    import os, sys, time
    import numpy as np
    import brainseg.io as bio
    path, mode = sys.argv[1], sys.argv[2]
    if mode == 'hang-before-rename':
        real = os.replace
        def replace(a, b): print('RENAMING', flush=True); time.sleep(60); real(a, b)
        bio.os.replace = replace
    data = np.random.default_rng(1).random((160, 160, 80)).astype(np.float32)
    print('WRITING', flush=True)
    bio.save_nifti(data, np.eye(4), path)
    print('DONE', flush=True)
''')

def start(path, mode):
    p = subprocess.Popen([sys.executable, '-c', WRITER, str(path), mode], stdout=subprocess.PIPE, text=True)
    return p

def wait_for(proc, word):
    for line in proc.stdout:
        if line.strip() == word: return
    raise AssertionError(f"writer ended before printing {word}")

def test_killed_before_rename_keeps_old_file(tmp_path):
    final = tmp_path / 'result.nii.gz'
    save_nifti(np.full((4, 4, 4), 7, np.uint8), np.eye(4), final)
    before = final.read_bytes()
    proc = start(final, 'hang-before-rename')
    wait_for(proc, 'RENAMING')  # the new file is complete under its temporary name
    proc.send_signal(signal.SIGKILL); proc.wait()
    assert final.read_bytes() == before
    assert (np.asanyarray(nib.load(final).dataobj) == 7).all()

@pytest.mark.parametrize('delay', [0.0, 0.1, 0.3])
def test_killed_mid_write_leaves_nothing_partial(tmp_path, delay):
    final = tmp_path / 'big.nii.gz'
    proc = start(final, 'plain')
    wait_for(proc, 'WRITING')
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL); proc.wait()
    if final.exists():  # the write finished before the kill: then the file is whole
        assert nib.load(final).get_fdata().shape == (160, 160, 80)
    leftovers = [p.name for p in tmp_path.iterdir() if p != final]
    assert all(n.startswith('.') and '.tmp.' in n for n in leftovers), leftovers

def test_exception_mid_write_cleans_up(tmp_path, monkeypatch):
    final = tmp_path / 'x.nii.gz'
    def broken_save(img, path):
        open(path, 'wb').write(b'partial'); raise OSError('disk full')
    monkeypatch.setattr(nib, 'save', broken_save)
    with pytest.raises(OSError, match='disk full'): save_nifti(np.ones((3, 3, 3)), np.eye(4), final)
    assert list(tmp_path.iterdir()) == []
