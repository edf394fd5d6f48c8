"""Grids on a Dask LocalCluster: the same scores as one run at a time, a failing run and a killed worker recorded
while the others finish, a second call resumes, one driver per folder, clear errors before anything is written."""
import json, os, platform, subprocess, sys
from pathlib import Path
import nbformat
import pytest
from brainseg.executors import make_executor, DaskExecutor, grid_lock
from brainseg.experiments import run_grid
from brainseg.cli import main

TINY = dict(data='phantom:4', size='32x32x16', folds=2, epochs=1, iters_per_epoch=2, batch_size=2, augment='none',
            modalities=['T1'])
UNET = {'model': 'unet', 'features': 4}
BRAINSEG = str(Path(sys.executable).parent / 'brainseg')

def grid(broken: bool) -> dict:
    "Two U-Net runs (folds 0 and 1) and, if `broken`, a run made to fail in its notebook (held-out ids not in data)."
    configs = {'unet0': {**UNET, 'fold': 0}, 'unet1': {**UNET, 'fold': 1}}
    return {'name': 'tiny', 'configs': {**configs, **({'broken': {**UNET, 'val_ids': 'nobody'}} if broken else {})},
            'base': TINY}

@pytest.fixture(scope='module')
def cluster():
    "One LocalCluster of 2 single-threaded workers for the module; a run gets 1 torch thread on it."
    ex = DaskExecutor(workers=2, threads=1).start(log=None)
    yield ex
    ex.close()

@pytest.fixture(scope='module')
def grids(tmp_path_factory, cluster):
    "The same U-Net runs one at a time (1 thread each) and on the cluster, beside a run that fails."
    seq, par = tmp_path_factory.mktemp('sequential'), tmp_path_factory.mktemp('workers')
    run_grid(grid(broken=False), seq, executor=make_executor(threads=1), log=lambda line: None)
    lines = []
    status = run_grid(grid(broken=True), par, executor=cluster, log=lines.append)
    return seq, par, status, lines

def write_notebook(path, code: str) -> str:
    "A run notebook: parameters `seed` and `out`, then `code`."
    cells = [nbformat.v4.new_code_cell("seed = 0\nout = ''", metadata={'tags': ['parameters']}),
             nbformat.v4.new_code_cell(code)]
    kernel = {'name': 'python3', 'language': 'python', 'display_name': 'Python 3'}
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata={'kernelspec': kernel}), path)
    return str(path)

def results(folder) -> dict:
    return {p.parent.name: json.loads(p.read_text()) for p in Path(folder).glob('*/result.json')}

def test_workers_give_the_same_scores_as_one_at_a_time(grids):
    seq, par, status, lines = grids
    one, two = results(seq), results(par)
    assert len(one) == 2 and set(one) == set(two)
    for run in one:
        assert one[run]['scores'] == two[run]['scores'] and one[run]['mean_dice'] == two[run]['mean_dice']
        assert one[run]['placement']['executor'] == 'sequential'
        assert two[run]['placement']['executor'] == 'dask-local'
        assert one[run]['placement']['torch_threads'] == two[run]['placement']['torch_threads'] == 1
    assert {r['placement']['slot'] for r in two.values()} <= {0, 1}
    assert any(line.startswith('[3/3]') and 'failed 1' in line and 'ETA' in line for line in lines), lines

def test_a_failing_run_is_recorded_and_the_others_finish(grids):
    _, par, status, _ = grids
    assert list(status['status']) == ['done', 'done', 'failed']
    for run in status['run'][2:]:
        failed = json.loads((par / run / 'failed.json').read_text())
        assert failed['ename'] == 'ValueError' and "held-out ids ['nobody']" in failed['evalue']

def test_a_second_call_skips_finished_and_failed_runs(grids, cluster):
    _, par, status, _ = grids
    before = {r: (par / r / 'run.ipynb').stat().st_mtime_ns for r in status['run']}
    lines = []
    again = run_grid(grid(broken=True), par, executor=cluster, log=lines.append)
    assert list(again['status']) == list(status['status']) and '0 to run' in lines[0]
    assert {r: (par / r / 'run.ipynb').stat().st_mtime_ns for r in status['run']} == before

KILLER = """import json, os, pathlib, signal, time
if os.environ.get('BRAINSEG_EXECUTOR') != 'dask-local': raise RuntimeError('this notebook kills its Dask worker')
first = not pathlib.Path('attempted').exists()
pathlib.Path('attempted').touch()
if seed == 2 or (seed == 1 and first):
    os.kill(os.getppid(), signal.SIGKILL)  # the kernel's parent is the worker process running the run
    time.sleep(60)  # ipykernel exits within a second once its parent is gone: nothing below runs
json.dump({'seed': seed}, open('result.json', 'w'))"""

def test_a_killed_worker_is_retried_once_then_recorded(tmp_path, cluster):
    write_notebook(tmp_path / 'killer.ipynb', KILLER)
    g = {'name': 'killer', 'configs': {'ok': {'seed': 0}, 'once': {'seed': 1}, 'always': {'seed': 2}}}
    lines = []
    status = run_grid(g, tmp_path / 'out', notebook=str(tmp_path / 'killer.ipynb'), executor=cluster,
                      log=lines.append)
    assert list(status['status']) == ['done', 'done', 'failed'], lines
    once, always = (tmp_path / 'out' / r for r in status['run'][1:])
    assert json.loads((once / 'started.json').read_text())['attempt'] == 2
    failed = json.loads((always / 'failed.json').read_text())
    assert failed['ename'] == 'KilledWorker' and 'died at attempt 2' in failed['evalue']
    assert any('once' in line and 'attempt 2' in line for line in lines), lines
    cluster.client.wait_for_workers(2, timeout=60)  # the killed workers were restarted

def test_an_existing_cluster_runs_the_grid_without_oversubscribing(tmp_path, cluster):
    "--scheduler: the runs go to the cluster's workers; two workers sharing this host's CPUs split them."
    from brainseg.executors import _cores
    nb = write_notebook(tmp_path / 'env.ipynb', "import json, os\njson.dump({k: os.environ.get(k) for k in "
                        "('BRAINSEG_EXECUTOR', 'OMP_NUM_THREADS')}, open('result.json', 'w'))")
    g = {'name': 'env', 'configs': {'a': {'seed': 0}, 'b': {'seed': 1}}}
    status = run_grid(g, tmp_path / 'out', notebook=nb, log=lambda line: None,
                      executor=DaskExecutor(scheduler=cluster.cluster.scheduler_address))
    assert list(status['status']) == ['done', 'done']
    assert {json.dumps(r, sort_keys=True) for r in results(tmp_path / 'out').values()} == {json.dumps(
        {'BRAINSEG_EXECUTOR': 'dask-scheduler', 'OMP_NUM_THREADS': str(max(1, _cores() // 2))}, sort_keys=True)}
    assert cluster.started  # the cluster is the fixture's, still up: a driver only disconnects from it

def test_a_second_driver_on_the_same_folder_is_refused(tmp_path):
    out = tmp_path / 'g'
    out.mkdir()
    with grid_lock(out):  # this process drives the grid in `out`; a second `brainseg experiment` is refused
        r = subprocess.run([BRAINSEG, 'experiment', 'smoke', '--out', str(out)], capture_output=True, text=True)
        assert [p.name for p in out.iterdir()] == ['.lock']  # the first driver's; nothing of the second
    assert r.returncode == 2, r.stderr
    assert f"being run by another brainseg driver (host {platform.node()}, pid {os.getpid()}" in r.stderr
    assert not (out / '.lock').exists()

def test_workers_0_fails_with_one_line_and_nothing_written(tmp_path, capsys):
    assert main(['experiment', 'smoke', '--out', str(tmp_path / 'x'), '--workers', '0']) == 2
    err = capsys.readouterr().err
    assert err == 'brainseg experiment: error: --workers must be an integer of at least 1, found 0\n'
    assert not (tmp_path / 'x').exists()

def test_an_unreachable_scheduler_fails_with_one_line_and_nothing_written(tmp_path):
    "Through the entry point: nothing Dask logs on the way may reach the user besides the one line."
    env = {**os.environ, 'DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT': '2s'}
    r = subprocess.run([BRAINSEG, 'experiment', 'smoke', '--out', str(tmp_path / 'x'), '--scheduler',
                        'tcp://127.0.0.1:9'], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and r.stderr.startswith(
        "brainseg experiment: error: cannot reach the Dask scheduler at 'tcp://127.0.0.1:9' within 2 s"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / 'x').exists()

SLEEPER = """import json, time
if seed: time.sleep(120)  # a long run, interrupted below
json.dump({'seed': seed}, open('result.json', 'w'))"""

def test_ctrl_c_shuts_the_cluster_down_and_keeps_finished_runs(tmp_path):
    "SIGINT to the driver's process group, as a terminal's Ctrl-C: exit 130, no worker or kernel left, lock gone."
    import signal, time
    import psutil
    from brainseg.experiments import plan_grid
    write_notebook(tmp_path / 'sleeper.ipynb', SLEEPER)
    configs = {'quick': {'seed': 0}, 'slow': {'seed': 1}, 'slower': {'seed': 2}}
    (tmp_path / 'g.json').write_text(json.dumps({'name': 'sleepy', 'configs': configs}))
    out = tmp_path / 'out'
    p = subprocess.Popen([BRAINSEG, 'experiment', str(tmp_path / 'g.json'), '--out', str(out), '--workers', '2',
                          '--notebook', str(tmp_path / 'sleeper.ipynb')], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        lines = []
        for line in p.stdout:
            lines.append(line)
            if line.startswith('[1/3]'): break
        time.sleep(2)  # the slow runs' kernels are up
        spawned = psutil.Process(p.pid).children(recursive=True)
        assert len(spawned) >= 4, spawned  # 2 workers and at least one kernel
        os.killpg(p.pid, signal.SIGINT)
        rest = p.communicate(timeout=60)[0]
    finally:
        if p.poll() is None: p.kill()
    assert p.returncode == 130, lines + [rest]
    assert 'interrupted; what finished is kept: the same command resumes' in rest
    time.sleep(2)  # a kernel exits within a second of its worker
    assert not [q for q in spawned if q.is_running() and q.status() != psutil.STATUS_ZOMBIE], spawned
    assert (out / 'grid.json').is_file() and not (out / '.lock').exists()
    assert len(list(out.glob('*/result.json'))) == 1  # the quick run
    assert len(plan_grid(str(tmp_path / 'g.json'), out, notebook=str(tmp_path / 'sleeper.ipynb')).todo) == 2
