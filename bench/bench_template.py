"""Time template subjects (ICBM152 2009c + CerebrA): template loading, N subjects cold (empty cache), the cached second
call, and phantoms of the same size as the peer. Prints figures; asserts nothing.
    python bench/bench_template.py                      # 10 subjects, 240 x 240 x 48
    python bench/bench_template.py --n 4 --shape 96 96 24
"""
import argparse, tempfile
from common import timed

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--n', type=int, default=10, help='number of subjects')
    ap.add_argument('--shape', type=int, nargs=3, default=(240, 240, 48), help='output grid (X, Y, Z)')
    ap.add_argument('--seed', type=int, default=0)
    a = ap.parse_args()
    print(f"config: n={a.n} shape={tuple(a.shape)} seed={a.seed}")
    from brainseg.template import load_template, template_anatomy, template_subjects, class_volumes
    from brainseg.phantom import make_phantom
    _, t_load = timed(lambda: (load_template(), template_anatomy()))
    with tempfile.TemporaryDirectory() as cache:
        subjects, t_cold = timed(lambda: template_subjects(a.n, a.seed, shape=a.shape, cache_dir=cache))
        again, t_warm = timed(lambda: template_subjects(a.n, a.seed, shape=a.shape, cache_dir=cache))
    _, t_nocache = timed(lambda: template_subjects(a.n, a.seed + 1, shape=a.shape, cache=False))
    _, t_phantom = timed(lambda: [make_phantom((a.seed, k), a.shape) for k in range(a.n)])
    same = all((s.labels == r.labels).all() and all((s.images[m] == r.images[m]).all() for m in s.modalities)
               for s, r in zip(subjects, again))
    rows = [('load template + map CerebrA (once per process)', t_load),
            (f'{a.n} subjects cold, written to an empty cache', t_cold),
            (f'{a.n} subjects cold, cache off', t_nocache),
            (f'{a.n} subjects cached (second call)', t_warm),
            (f'{a.n} phantoms (peer)', t_phantom)]
    for name, t in rows: print(f"{name:<50s} {t:8.2f} s  {t / a.n * 1000:8.0f} ms/subject")
    print(f"cold / cached: {t_cold / t_warm:.0f}x   template (cache off) / phantom: {t_nocache / t_phantom:.2f}x   "
          f"cached identical: {same}")
    print('class volumes (ml) of subject 0:', class_volumes(subjects[0].labels, subjects[0].spacing))

if __name__ == '__main__': main()
