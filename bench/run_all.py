"""Run the benchmarks in bench/ and write BENCHMARKS.md: the machine, the commands, and what each printed.

Every benchmark measures brainseg next to a peer in the same run (MONAI, TorchIO, a per-point KD-tree, matplotlib)
and prints its figures and ratios; this script runs each in its own process, one after the other, and collects
their output with the wall time each took. Nothing is asserted. A benchmark that fails is reported (exit status and
the end of its output) and the others still run; the exit status is then 1.
    python bench/run_all.py --quick            # small sizes: about 20 minutes on 2 cores
    python bench/run_all.py                    # the scripts' own defaults (240 x 240 x 48, full budgets): long
    python bench/run_all.py --only models metrics --out /some/where.md
    python bench/run_all.py --device cuda      # the benchmarks that run on a GPU, into BENCHMARKS-cuda.md
"""
from __future__ import annotations
import argparse, os, platform, shlex, signal, subprocess, sys, time
from pathlib import Path
import torch

BENCH = Path(__file__).resolve().parent
# name -> (what it compares, script, arguments of the full run, arguments of --quick)
SUITE = {
    'models': ("Training throughput, peak memory and GFLOP/s: brainseg's networks vs MONAI's UNet and VNet",
               'bench_models.py', [], ['--size', '128', '--steps', '2', '--batch', '4', '--memory-plain']),
    'metrics': ("Scoring (HD95 of 8 labels, 240 x 240 x 48): brainseg vs a per-point KD-tree reference",
                'bench_metrics.py', [], ['--repeat', '1']),
    'template': ('Template subjects: loading, generation cold and cached, vs phantoms',
                 'bench_template.py', [], ['--n', '2', '--shape', '96', '96', '24']),
    'randomize': ("Domain randomization: brainseg's batched Randomize vs a TorchIO pipeline and brainseg's numpy one",
                  'bench_randomize.py', [], ['--n', '20', '--repeats', '3']),
    'viewer': ('Viewer: slider change to new PNG vs a matplotlib redraw',
               'bench_viewer.py', [], ['--steps', '5']),
    'inference': ("Whole-volume inference (240 x 240 x 48, 3 modalities): brainseg's networks vs MONAI's "
                  "sliding_window_inference", 'bench_inference.py', [],
                  ['--size', '128', '--depth', '24', '--repeats', '1']),
    'data': ('Data pipeline, batches on the training device vs per-sample numpy in DataLoaders: samples/s per dataset '
             'and transform, share of a training step spent waiting', 'bench_data.py', [], ['--quick']),
    'scaling': ('Scaling: step time and memory vs slab depth, in-plane size, batch, subjects; DDP with 2 processes',
                'bench_scaling.py', [], ['--quick']),
    'real_brains': ('Models for real scans on Colin27 (a brain never seen in training)',
                    'bench_real_brains.py', ['--models', 'pretrained:t1', 'pretrained:multi', '--template'],
                    ['--models', 'pretrained:t1']),
    'grid': ('Grid wall time: the same small grid one run at a time vs --workers 2 (a Dask LocalCluster)',
             'bench_grid.py', [], ['--runs', '4', '--iters', '20']),
    'training': ("Held-out Dice at a fixed training budget: brainseg's trainer vs a plain MONAI U-Net recipe",
                 'bench_training.py', [], ['--subjects', '4', '--size', '96x96x24', '--steps', '30']),
}

# pictures the benchmarks write, per device, shown under their output
PLOTS = {'scaling': {'cpu': 'bench/scaling.png', 'cuda': 'bench/scaling-cuda.png'}}

# name -> arguments added to the full run's with `--device cuda` (after `--device cuda`); the others run on a CPU only.
# Their step sweeps, data loaders and trainings move to the GPU; DDP (gloo) stays on CPUs, so scaling drops it.
CUDA = {
    'models': ['--steps', '10', '--memory-plain',
               '--only', 'unet', 'monai_unet', 'base', 'base_ckpt', 'base_inst', 'base_cls',
               'base_cls_compile', 'cascade', 'vnet', 'monai_vnet'],
    'inference': ['--threads', str(os.cpu_count())],
    'data': ['--batch-size', '8', '64', '--paths', 'old-4', 'new'],
    'randomize': ['--batch', '64'],
    'scaling': ['--only', 'depth', 'size', 'batch', 'subjects', '--plot', PLOTS['scaling']['cuda']],
    'training': ['--budget', 'steps', '--variant', '', '--variant', 'model=base,class_head=true',
                 '--variant', 'model=vnet'],
}



def machine() -> list:
    "Lines describing the machine and the software the figures were measured with."
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(':', 1)[1].strip() for line in Path('/proc/cpuinfo').read_text().splitlines()
                   if line.startswith('model name'))
    except (OSError, StopIteration): pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'
    return [f"- CPU: {cpu}; {os.cpu_count()} logical cores; GPU: {gpu}",
            f"- Python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"{platform.system()}"]


def arguments(name: str, quick: bool, device: str) -> list:
    "The command-line arguments of one benchmark for these sizes and this device."
    _, _, full, small = SUITE[name]
    if device == 'cpu': return small if quick else full
    return [*(small if quick else full), '--device', device, *([] if quick else CUDA[name])]


def run(name: str, quick: bool, device: str = 'cpu', timeout: float | None = None) -> dict:
    """Run one benchmark in its own process; its command, output, exit status and wall time. Past `timeout` seconds
    it is stopped with all it started, and reported as failed with the output it had written."""
    title, script = SUITE[name][:2]
    args = arguments(name, quick, device)
    cmd = [sys.executable, str(BENCH / script), *args]
    shown = ' '.join(['python', f'bench/{script}', *map(shlex.quote, args)])
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=BENCH.parent,
                         start_new_session=True)  # its own process group: a timeout stops its children too
    try: out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        err += f"\nstopped after {timeout:g} s (--timeout)"
    return dict(name=name, title=title, command=shown, status=p.returncode, seconds=time.perf_counter() - t,
                output=out.strip(), errors=err.strip())


def report(results: list, quick: bool, command: str, device: str = 'cpu') -> str:
    "BENCHMARKS.md: the machine, the command, and each benchmark's output."
    lines = [f"# Benchmarks, {'quick' if quick else 'full'} sizes", '',
             f"Measured {time.strftime('%Y-%m-%d %H:%M')} by `{command}`"
             f"{' (quick sizes: read ratios, not absolute figures)' if quick else ''}; each benchmark ran in its own "
             "process, one after the other, its peer measured in the same run. Machines are shared and noisy: only "
             "ratios within one run count.", '', *machine(), '']
    for r in results:
        lines += [f"## {r['title']}", '', f"`{r['command']}`: {r['seconds']:.0f} s"
                  + ('' if r['status'] == 0 else f", **failed** (exit status {r['status']})"), '',
                  '```text', r['output'] or '(no output)', '```', '']
        if r['name'] in PLOTS and r['status'] == 0: lines += [f"![{r['name']}]({PLOTS[r['name']][device]})", '']
        if r['status'] != 0: lines += ['End of its error output:', '', '```text', r['errors'][-3000:], '```', '']
    return '\n'.join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--quick', action='store_true', help='small sizes and budgets: minutes, not hours')
    p.add_argument('--only', nargs='+', choices=list(SUITE), help='run only these (default: all)')
    p.add_argument('--device', choices=['cpu', 'cuda'], default='cpu',
                   help=f"cuda: the benchmarks that use a GPU ({', '.join(CUDA)}) run there")
    p.add_argument('--timeout', type=float, help='seconds after which a benchmark is stopped and reported as failed')
    p.add_argument('--out', help='the report (default: BENCHMARKS.md, with --device cuda BENCHMARKS-cuda.md)')
    args = p.parse_args(argv)
    if args.device == 'cuda' and not torch.cuda.is_available(): p.error("--device cuda: torch sees no CUDA device")
    names = args.only or [n for n in SUITE if args.device == 'cpu' or n in CUDA]
    if args.device == 'cuda' and set(names) - set(CUDA):
        p.error(f"--device cuda: {', '.join(sorted(set(names) - set(CUDA)))} run on a CPU only")
    args.out = args.out or str(BENCH.parent / ('BENCHMARKS.md' if args.device == 'cpu' else 'BENCHMARKS-cuda.md'))
    results = []
    for name in names:
        print(f"{name} ...", flush=True)
        results.append(run(name, args.quick, args.device, args.timeout))
        print(f"{name}: {'ok' if results[-1]['status'] == 0 else 'FAILED'} in {results[-1]['seconds']:.0f} s",
              flush=True)
    command = ' '.join(['python bench/run_all.py', *(argv if argv is not None else sys.argv[1:])])
    out = Path(args.out)
    tmp = out.with_name(out.name + '.tmp')
    tmp.write_text(report(results, args.quick, command, args.device))
    tmp.replace(out)  # atomically: an earlier report is never half overwritten
    print(f"wrote {out}")
    return 0 if all(r['status'] == 0 for r in results) else 1


if __name__ == '__main__':
    sys.exit(main())
