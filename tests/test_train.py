"""Training across processes: a killed run resumes to the same weights, as does a run that recomputes its blocks in the
backward pass; a compiled run trains as the eager one; DDP with 2 gloo processes keeps them in sync."""
import json, os, shutil, signal, subprocess, sys, time
import pytest
import torch
from brainseg.checkpoints import load_checkpoint

ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}
TRAIN = ['train', '--data', 'phantom:3', '--size', '32x32x16', '--val-ids', 'phantom0-2', '--model', 'base',
         '--features', '8', '--epochs', '3', '--iters-per-epoch', '6', '--batch-size', '2', '--eps', '0.1',
         '--checkpoint-every', '2', '--device', 'cpu']

def brainseg(*args):
    return [sys.executable, '-m', 'brainseg.cli', *map(str, args)]

def weights(path):
    return load_checkpoint(path)['model']

@pytest.fixture(scope='module')
def reference_run(tmp_path_factory):
    "The folder of the uninterrupted run, in one process, data loaded in it."
    out = tmp_path_factory.mktemp('ref')
    ref = subprocess.run(brainseg(*TRAIN, '--out', out), env=ENV, capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    return out

@pytest.fixture(scope='module')
def reference(reference_run):
    "The weights of the uninterrupted run."
    return weights(reference_run / 'last.pt')

def same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a: assert torch.equal(a[k], b[k]), k

def test_killed_run_resumes_to_the_same_weights(tmp_path, reference):
    out = tmp_path / 'killed'
    proc = subprocess.Popen(brainseg(*TRAIN, '--out', out), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / 'last.pt').exists() and proc.poll() is None and time.time() < deadline: time.sleep(0.01)
    proc.send_signal(signal.SIGKILL); proc.wait()
    assert proc.returncode == -signal.SIGKILL, 'the run ended before it could be killed'
    killed_at = load_checkpoint(out / 'last.pt')
    assert (killed_at['epoch'], killed_at['step']) < (3, 0)  # really interrupted
    resumed = subprocess.run(brainseg(*TRAIN, '--out', out), env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {out / 'last.pt'} at epoch {killed_at['epoch']}, step {killed_at['step']}" in resumed.stdout
    same_weights(reference, weights(out / 'last.pt'))
    assert json.loads((out / 'history.json').read_text())[-1]['epoch'] == 3

def test_recomputed_blocks_give_the_same_weights(tmp_path, reference):
    "Blocks recomputed in the backward pass change nothing in the run."
    r = subprocess.run(brainseg(*TRAIN, '--out', tmp_path, '--grad-checkpointing'), env=ENV,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cfg = json.loads((tmp_path / 'config.json').read_text())
    assert cfg['grad_checkpointing'] is True
    same_weights(reference, weights(tmp_path / 'last.pt'))

@pytest.mark.skipif(shutil.which(os.environ.get('CXX', 'g++')) is None, reason='torch.compile needs a C++ compiler')
def test_compiled_run_trains_as_the_eager_one(tmp_path, reference_run):
    "`--compile` (about 2 minutes here): gradients checked before training, then the losses of the eager run."
    r = subprocess.run(brainseg(*TRAIN, '--out', tmp_path, '--compile'), env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'gradients agree with eager ones' in r.stdout
    history = [json.loads((run / 'history.json').read_text()) for run in (reference_run, tmp_path)]
    for eager, compiled in zip(*history):  # float32 rounding: 4e-4 apart after 3 epochs
        assert abs(compiled['loss'] - eager['loss']) < 5e-3 * eager['loss'], (eager, compiled)

def test_resume_with_another_config_is_refused(tmp_path):
    args = [*TRAIN[:TRAIN.index('--epochs')], '--epochs', '1', '--iters-per-epoch', '1', '--out', tmp_path]
    assert subprocess.run(brainseg(*args), env=ENV, capture_output=True).returncode == 0
    r = subprocess.run(brainseg(*args, '--lr', '0.01'), env=ENV, capture_output=True, text=True)
    assert r.returncode == 2 and "written with another config (differs in ['lr'])" in r.stderr

def test_ddp_two_gloo_processes(tmp_path):
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', '-m', 'brainseg.cli',
           *TRAIN[:TRAIN.index('--epochs')], '--epochs', '2', '--iters-per-epoch', '3', '--out', str(tmp_path)]
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ddp = json.loads((tmp_path / 'ddp.json').read_text())
    assert ddp['world_size'] == 2 and ddp['checksums'][0] == ddp['checksums'][1]
    assert 'on cpu x 2 processes' in r.stdout
    history = json.loads((tmp_path / 'history.json').read_text())
    assert [h['epoch'] for h in history] == [1, 2] and all('val_dice' in h for h in history)
