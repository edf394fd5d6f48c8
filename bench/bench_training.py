"""Held-out Dice per training budget: brainseg's trainer next to a plain MONAI U-Net recipe, in one run.

The peer is the 60-line recipe a researcher would write first: MONAI's 2D `UNet` (32-64-128-256, 2 residual units,
instance norm), random 192 x 192 crops, left-right flips, CE + batch soft Dice (`DiceCELoss(batch=True)`), Adam 1e-3,
batch 8, z-score over non-zero voxels. Both train on the same embedded template subjects (head kept) and are scored
with the official MRBrainS18 measures on the same held-out subjects. Budget: brainseg runs `--steps` steps, then the
peer trains for the wall time brainseg took (`--budget time`, the CPU comparison) or for the same number of steps
(`--budget steps`, learning per sample). Each brainseg variant is a set of `TrainConfig` overrides. Asserts nothing.

    python bench/bench_training.py --steps 900                       # CPU, defaults vs the peer (about 25 min)
    python bench/bench_training.py --steps 900 --variant norm=batch,crop=0 --variant norm=instance,crop=192
    python bench/bench_training.py --steps 900 --device cuda --budget steps
"""
import argparse, json, tempfile, time
import numpy as np
import torch

FOCUS = ['G', 'B', 'WM', 'V', 'C', 'BS']  # the structures the issue tracker reports (lesions and CSF aside)

def data(n, size, modalities, skull_strip):
    from brainseg.template import template_subjects
    return template_subjects(n, shape=size, modalities=modalities, skull_strip=skull_strip)

def score(subjects, predict) -> dict:
    "Mean official Dice per structure over held-out subjects, and the means over 8 structures and over FOCUS."
    from brainseg.experiments import score_run
    per = score_run(subjects, {s.id: predict(s) for s in subjects}).groupby('code', sort=False)['dice'].mean()
    return {**{k: round(float(v), 4) for k, v in per.items()}, 'mean8': round(float(per.mean()), 4),
            'mean6': round(float(per[FOCUS].mean()), 4)}

def run_brainseg(overrides, train_s, val_s, steps, batch, device, out, modalities):
    from brainseg.trainconfig import TrainConfig
    from brainseg.checkpoints import load_model
    from brainseg.train import train
    from brainseg.infer import predict_subject
    epochs = max(1, round(steps / 150))
    cfg = TrainConfig.from_dict({'model': 'unet', 'class_head': False, 'modalities': modalities, 'epochs': epochs,
                                 'iters_per_epoch': max(1, steps // epochs), 'batch_size': batch, 'device': device,
                                 **overrides})
    t0 = time.perf_counter()
    train(cfg, train_s, [], out, resume=False, log=lambda *a: None)
    seconds = time.perf_counter() - t0
    model, cfg = load_model(f"{out}/last.pt", device)
    return seconds, cfg.epochs * cfg.iters_per_epoch, score(val_s, lambda s: predict_subject(model, s, cfg.modalities))

def run_peer(train_s, val_s, batch, device, steps=None, seconds=None, seed=0):
    "The MONAI recipe, for `steps` steps or until `seconds` have passed."
    from monai.networks.nets import UNet
    from monai.losses import DiceCELoss
    from brainseg.labels import training_target, IGNORE_INDEX
    from brainseg.data import zscore, to_network_layout, to_subject_layout
    torch.manual_seed(seed); rng = np.random.default_rng(seed)
    dev = torch.device(device)
    def volume(s):  # (Z, C, Y, X) images and (Z, Y, X) targets
        img = to_network_layout(zscore(s)[0]).transpose(1, 0, 2, 3)
        tgt = None if s.labels is None else to_network_layout(training_target(s.labels))
        return np.ascontiguousarray(img, np.float32), tgt
    vols = [volume(s) for s in train_s]
    slices = [(v, z) for v in range(len(vols)) for z in range(vols[v][0].shape[0])]
    crop = [min(192, n - n % 8) for n in vols[0][1].shape[1:]]  # 192 x 192, or the largest multiple of 8 that fits
    net = UNet(2, len(train_s[0].modalities), 9, channels=(32, 64, 128, 256), strides=(2, 2, 2),
               num_res_units=2).to(dev)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    t0, step = time.perf_counter(), 0
    while (steps is None or step < steps) and (seconds is None or time.perf_counter() - t0 < seconds):
        xs, ts = [], []
        for k in rng.integers(len(slices), size=batch):
            v, z = slices[k]
            img, tgt = vols[v][0][z], vols[v][1][z]
            (y, x), (h, w) = ((int(rng.integers(n - c + 1)) for n, c in zip(tgt.shape, crop)), crop)
            img, tgt = img[:, y:y + h, x:x + w], tgt[y:y + h, x:x + w]
            if rng.random() < 0.5: img, tgt = img[..., ::-1], tgt[..., ::-1]
            xs.append(np.ascontiguousarray(img))
            ts.append(np.where(tgt == IGNORE_INDEX, 0, tgt)[None].astype(np.int64))
        x, t = torch.from_numpy(np.stack(xs)).to(dev), torch.from_numpy(np.stack(ts)).to(dev)
        loss = loss_fn(net(x), t)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); step += 1
    took = time.perf_counter() - t0
    net.eval()
    @torch.no_grad()
    def predict(s):
        img = torch.from_numpy(volume(s)[0])
        y, x = (-n % 8 for n in img.shape[2:])
        img = torch.nn.functional.pad(img, (0, x, 0, y))
        pred = torch.cat([net(img[i:i + 8].to(dev)).argmax(1).cpu() for i in range(0, len(img), 8)])
        return to_subject_layout(pred[:, :pred.shape[1] - y, :pred.shape[2] - x].numpy().astype(np.uint8))
    return took, step, score(val_s, predict)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--subjects', type=int, default=12, help='template subjects; the last --val are held out')
    p.add_argument('--val', type=int, default=1)
    p.add_argument('--size', default='240x240x48')
    p.add_argument('--modalities', default='T1')
    p.add_argument('--skull-strip', action='store_true')
    p.add_argument('--steps', type=int, default=900, help='brainseg training steps (batch --batch)')
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--budget', choices=['time', 'steps'], default='time', help='what the peer gets the same of')
    p.add_argument('--variant', action='append', help="brainseg TrainConfig overrides, e.g. 'norm=batch,crop=0' "
                   "(repeatable; default: the TrainConfig defaults for a U-Net)")
    p.add_argument('--no-peer', action='store_true')
    p.add_argument('--device', default='cpu')
    p.add_argument('--threads', type=int, default=0, help='torch threads (0: leave as is)')
    p.add_argument('--out', help='folder for the checkpoints (default: a new temporary folder)')
    p.add_argument('--json', help='also write the rows to this file')
    a = p.parse_args(argv)
    a.out = a.out or tempfile.mkdtemp(prefix='brainseg-bench-training-')
    if a.threads: torch.set_num_threads(a.threads)
    size = tuple(int(v) for v in a.size.split('x'))
    mods = tuple(a.modalities.split(','))
    subjects = data(a.subjects, size, mods, a.skull_strip)
    train_s, val_s = subjects[:-a.val], subjects[-a.val:]
    print(f"# {len(train_s)} training / {len(val_s)} held-out template subjects ({', '.join(s.id for s in val_s)}), "
          f"{a.size}, {a.modalities}, skull {'stripped' if a.skull_strip else 'kept'}; device {a.device}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}", flush=True)
    from brainseg.cli import parse_sets
    rows = []
    for k, text in enumerate(a.variant or ['']):  # 'norm=instance,crop=192': values read as JSON, else as text
        secs, steps, dice = run_brainseg(parse_sets(filter(None, text.split(','))), train_s, val_s, a.steps, a.batch,
                                         a.device, f"{a.out}/brainseg{k}", mods)
        rows.append({'who': f"brainseg {text or 'defaults'}", 'seconds': round(secs, 1), 'steps': steps, **dice})
        print(json.dumps(rows[-1]), flush=True)
    if not a.no_peer:
        first = rows[0] if rows else {'seconds': None, 'steps': a.steps}
        kw = {'seconds': first['seconds']} if a.budget == 'time' and rows else {'steps': first['steps']}
        secs, steps, dice = run_peer(train_s, val_s, a.batch, a.device, **kw)
        rows.append({'who': 'MONAI UNet recipe', 'seconds': round(secs, 1), 'steps': steps, **dice})
        print(json.dumps(rows[-1]), flush=True)
    cols = ['who', 'seconds', 'steps', *FOCUS, 'L', 'CSF', 'mean6', 'mean8']
    print('\n| ' + ' | '.join(cols) + ' |\n|' + '---|' * len(cols))
    for r in rows: print('| ' + ' | '.join(str(r.get(c, '')) for c in cols) + ' |')
    if a.json:
        with open(a.json, 'w') as f: json.dump(rows, f, indent=1)

if __name__ == '__main__':
    main()
