"""Training-step throughput, peak memory and achieved GFLOP/s of brainseg's networks next to MONAI's UNet and VNet.

Each measurement runs in its own process (so peak resident memory is its own). Prints a table; asserts nothing.
Rows: brainseg's U-Net, base network (batch norm, the paper's: NCHW, as PyTorch's channels-last batch norm sums in
float32 on a CPU; `base_inst`: instance norm, the trainer's default, as a channels-last GroupNorm;
`base_inst_nchw`: instance norm as it was before, InstanceNorm2d on NCHW features; `base_ckpt`: residual blocks
recomputed in the backward pass, `grad_checkpointing`), base + class head, V-Net (the trainer's: 5 x 5 x 5
convolutions, batch norm; `vnet_k3`: 3 x 3 x 3 ones, 4.4x fewer FLOPs), the cascade's three stage networks as
`train_cascade` builds them (instance norm, class heads; each at the full size: an upper bound, later stages train on
their region's box), MONAI's UNet and VNet.
`vnet_im2col`: the V-Net with PyTorch's own choice of 3D convolution backend (`nn.Conv3d`), which sends its deeper
levels to a one-thread im2col path at a batch of one; `vnet` keeps them on oneDNN (`models.Conv3d`).
`X_compile`: network X under torch.compile, as the trainer's `compile` runs it, its gradients checked against eager
ones (`train.check_compiled`).
Slab networks run at `--slab-batch` slabs of 19 slices (11 output slices each). `X_slab35`: network X on slabs of 35
slices (27 output slices; the batch that gives about as many output slices per step): each output slice is computed
as on 19-slice slabs (same weights, same 9-slice context), but the in-plane features of the 8 slices a slab loses
through-plane are shared by 27 output slices instead of 11. After the table, `--memory-batch`
slabs through `base_ckpt` (and through `base` with `--memory-plain`: an estimated 27 GB at 240 x 240, batch 8).
    python bench/bench_models.py                 # all, CPU, 240 x 240, batch 8 (slabs 2), 3 modalities, 9 classes
    python bench/bench_models.py --size 128 --steps 2 --only unet monai_unet
"""
import argparse, inspect, json, re, subprocess, sys, time
import torch
from common import gemm_gflops, peak_mib

MODELS = ['unet', 'unet_compile', 'monai_unet', 'base', 'base_ckpt', 'base_inst_nchw', 'base_inst', 'base_inst_compile',
          'base_cls', 'base_cls_compile', 'base_cls_slab35', 'base_cls_compile_slab35', 'cascade', 'vnet',
          'vnet_k3', 'vnet_im2col', 'vnet_compile', 'monai_vnet']
DEFENDED = {'unet', 'unet_compile', 'monai_unet', 'base', 'base_cls', 'base_cls_compile', 'vnet', 'vnet_compile'}
# (also timed with FGSM)

class AllStages(torch.nn.Module):
    "The cascade's stage networks on the same input, outputs concatenated: one step trains all three."
    def __init__(self, nets): super().__init__(); self.nets = torch.nn.ModuleList(nets)
    def forward(self, x):
        outs = [n(x) for n in self.nets]
        return {k: torch.cat([o[k] for o in outs], 1 if k == 'seg' else -1) for k in outs[0]}

class AsDict(torch.nn.Module):
    "A network that returns logits, returning {'seg': logits} as brainseg's networks do."
    def __init__(self, net): super().__init__(); self.net = net
    def forward(self, x): return {'seg': self.net(x)}

def slab_of(name) -> tuple:
    "'base_cls_slab35' -> ('base_cls', 35): a row's network and its input slices per slab (19 unless named)."
    m = re.fullmatch(r'(.+)_slab(\d+)', name)
    return (m[1], int(m[2])) if m else (name, 19)

def build(name):
    from brainseg.models import UNet, BaseNet, VNet, set_grad_checkpointing
    name = slab_of(name)[0]
    if name.endswith('_compile'): return build(name.removesuffix('_compile'))
    if name == 'unet': return UNet(3, 9), 'slice'
    if name == 'unet4': return UNet(3, 9, features=(32, 64, 128, 256)), 'slice'
    if name == 'monai_unet':
        from monai.networks.nets import UNet as MonaiUNet
        return AsDict(MonaiUNet(2, 3, 9, channels=(32, 64, 128, 256), strides=(2, 2, 2), num_res_units=2)), 'slice'
    if name == 'base': return BaseNet(3, 9, class_head=False), 'slab'
    if name == 'base_ckpt':
        net = BaseNet(3, 9, class_head=False)
        set_grad_checkpointing(net)
        return net, 'slab'
    if name == 'base_inst': return BaseNet(3, 9, class_head=False, norm='instance'), 'slab'
    if name == 'base_inst_nchw':
        net = BaseNet(3, 9, class_head=False, norm='instance')
        for m in list(net.modules()):
            for k, child in m.named_children():
                if isinstance(child, torch.nn.GroupNorm):
                    setattr(m, k, torch.nn.InstanceNorm2d(child.num_channels, affine=True))
        net.channels_last = False
        return net, 'slab'
    if name == 'base_cls': return BaseNet(3, 9, class_head=True), 'slab'
    if name == 'cascade':  # as `train_cascade` builds it from a default run: instance norm, class heads
        from brainseg.cascade import Cascade
        from brainseg.train import TrainConfig, stage_configs_from
        return AllStages(Cascade(configs=stage_configs_from(TrainConfig(model='base'))).nets), 'slab'
    if name == 'vnet': return VNet(3, 9), 'volume'
    if name == 'vnet_k3': return VNet(3, 9, kernel_size=3), 'volume'
    if name == 'vnet_im2col':
        net, kind = build('vnet')  # the same network, its convolutions PyTorch's own
        for m in net.modules():
            if isinstance(m, torch.nn.Conv3d): m.__class__ = torch.nn.Conv3d
        return net, kind
    if name == 'monai_vnet':
        from monai.networks.nets import VNet as MonaiVNet
        # MONAI's VNet needs in_channels to divide 16: a 1x1x1 convolution takes the 3 modalities to 4 channels
        return AsDict(torch.nn.Sequential(torch.nn.Conv3d(3, 4, 1), MonaiVNet(3, 4, 9))), 'volume'
    raise ValueError(name)

def make_batch(kind, batch, size, device, n_rois=8, slab=19):
    "Input, targets and the number of output slices per step (slab networks: `slab` slices in, 8 fewer out)."
    if kind == 'slice': x, t, n = torch.randn(batch, 3, size, size), torch.randint(0, 9, (batch, size, size)), batch
    elif kind == 'slab':
        x, t, n = (torch.randn(batch, 3, slab, size, size), torch.randint(0, 9, (batch, slab - 8, size, size)),
                   batch * (slab - 8))
    else: x, t, n = torch.randn(1, 3, 16, size, size), torch.randint(0, 9, (1, 16, size, size)), 16
    roi = torch.randint(0, 2, t.shape[:1] + ((t.shape[1],) if kind != 'slice' else ()) + (n_rois,)).float()
    return {'image': x.to(device), 'target': t.to(device), 'roi': roi.to(device)}, n

def one(name, size, batch, steps, defended, device, adv_fraction=1.0, amp=False):
    "Run in a child process: time training steps of one model, return figures."
    from torch.utils.flop_counter import FlopCounterMode
    from brainseg.losses import JointLoss
    from brainseg.adversarial import mix_adversarial
    from brainseg.train import check_compiled, autocast_for
    autocast = lambda: autocast_for(torch.device(device), amp)  # as the trainer runs a step (bfloat16 on CUDA)
    torch.manual_seed(0)
    model, kind = build(name)
    model = model.to(device).train()
    loss_fn = JointLoss(cls_weight=1.0)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    with torch.no_grad(): out = model(make_batch(kind, 1, 32, device)[0]['image'])
    rois = out['cls'].shape[-1] if 'cls' in out else 8
    network, depth = slab_of(name)
    data, n_slices = make_batch(kind, batch, size, device, rois, depth)
    net, extra = model, {}
    if network.endswith('_compile'):
        net = torch.compile(model)
        t0 = time.perf_counter()
        with autocast(): extra['grad_gap'] = check_compiled(model, net, data, loss_fn, tol=float('inf'))
        extra['compile_s'] = time.perf_counter() - t0
    def step(defended=defended):
        with autocast():
            b = mix_adversarial(net, data, loss_fn, eps=0.1, adv_fraction=adv_fraction) if defended else data
            loss, _ = loss_fn(net(b['image']), b)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    step()  # warm-up
    sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
    sync(); t0 = time.perf_counter()
    for _ in range(steps): step()
    sync(); dt = (time.perf_counter() - t0) / steps
    params = sum(p.numel() for p in model.parameters())
    if device == 'cuda': peak = torch.cuda.max_memory_allocated() / 2**20
    else: peak = peak_mib()
    # FLOPs counted after the peak is read: under the counter, recomputed blocks keep their activations
    with FlopCounterMode(display=False) as fc, autocast():  # it cannot follow autograd.grad, nor a compiled network
        loss_fn(model(data['image']), data)[0].backward()
    flops = fc.get_total_flops()
    return dict(model=name, defended=defended, params_M=params / 1e6, step_s=dt, slices_per_s=n_slices / dt,
                gflop_per_step=flops / 1e9, gflops=flops / 1e9 / dt if not defended else float('nan'), peak_MiB=peak,
                **extra)

def trainer_tol() -> float:
    "The largest gradient difference the trainer accepts from a compiled network (`check_compiled`'s default)."
    from brainseg.train import check_compiled
    return inspect.signature(check_compiled).parameters['tol'].default

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--size', type=int, default=240); p.add_argument('--batch', type=int, default=8)
    p.add_argument('--slab-batch', type=int, default=2, help='batch of the slab networks (19-slice slabs)')
    p.add_argument('--memory-batch', type=int, default=8,
                   help='after the table: one step of base_ckpt at this batch, for its peak memory (0: off)')
    p.add_argument('--memory-plain', action='store_true', help='the same step through base too')
    p.add_argument('--steps', type=int, default=3); p.add_argument('--only', nargs='*', default=MODELS)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--adv-fraction', type=float, default=1.0,
                   help='share of a defended batch replaced by FGSM examples')
    p.add_argument('--amp', action=argparse.BooleanOptionalAction,
                   help="bfloat16 autocast, as the trainer's `amp` (default: on CUDA, not on a CPU)")
    p.add_argument('--child', help=argparse.SUPPRESS)
    a = p.parse_args()
    a.amp = a.device == 'cuda' if a.amp is None else a.amp
    if a.child:
        name, defended = a.child.split(':')
        print(json.dumps(one(name, a.size, a.batch, a.steps, defended == '1', a.device, a.adv_fraction, a.amp)))
        return

    def child(name, defended, batch, steps):
        r = subprocess.run([sys.executable, __file__, '--child', f"{name}:{int(defended)}", '--size', str(a.size),
                            '--batch', str(batch), '--steps', str(steps), '--device', a.device,
                            '--adv-fraction', str(a.adv_fraction), '--amp' if a.amp else '--no-amp'],
                           capture_output=True, text=True)
        if r.returncode: print(f"{name} (batch {batch}): failed\n{r.stderr[-2000:]}"); return None
        return json.loads(r.stdout.strip().splitlines()[-1])

    dtype = torch.bfloat16 if a.amp and a.device == 'cuda' else torch.float32
    peak, what = gemm_gflops(a.device, dtype)
    where = torch.cuda.get_device_name() if a.device == 'cuda' else f"{torch.get_num_threads()} threads"
    print(f"device {a.device} ({where}), torch {torch.__version__}; {'bfloat16 autocast; ' if a.amp else ''}"
          f"{what}: {peak:.0f} GFLOP/s; input {a.size}x{a.size}, batch {a.batch} (slabs of 19 slices: "
          f"{a.slab_batch}), 3 modalities, 9 classes; slices/s counts output slices")
    rows = []
    for name in a.only:
        depth = slab_of(name)[1]  # deeper slabs: the batch with about as many output slices as --slab-batch slabs of 19
        batch = max(1, round(a.slab_batch * 11 / (depth - 8))) if name.startswith(('base', 'cascade')) else a.batch
        for defended in (False, True) if name in DEFENDED else (False,):
            r = child(name, defended, batch, a.steps)
            if r is None: break
            rows.append(r)
            print(f"{name}{' FGSM' if defended else ''}, batch {batch}: {r['step_s']:.3f} s per step", file=sys.stderr,
                  flush=True)  # progress, for a run stopped before its table
    w = max([13, *(len(r['model']) + 1 for r in rows)])  # the model column fits the longest name
    print(f"{'model':<{w}}{'defended':>9}{'params M':>10}{'step s':>9}{'slices/s':>10}{'GFLOP/step':>12}{'GFLOP/s':>9}"
          f"{'of GEMM':>9}{'peak MiB':>10}")
    for r in rows:
        print(f"{r['model']:<{w}}{str(r['defended']):>9}{r['params_M']:>10.2f}{r['step_s']:>9.2f}"
              f"{r['slices_per_s']:>10.2f}{r['gflop_per_step']:>12.1f}{r['gflops']:>9.1f}{r['gflops'] / peak:>9.0%}"
              f"{r['peak_MiB']:>10.0f}")
    by = {(r['model'], r['defended']): r for r in rows}
    print("\nratios:")
    for ours, theirs, net in (('unet', 'monai_unet', 'UNet'), ('vnet', 'monai_vnet', 'VNet')):
        if (ours, False) in by and (theirs, False) in by:
            print(f"  brainseg {net} / MONAI {net} throughput: "
                  f"{by[ours, False]['slices_per_s'] / by[theirs, False]['slices_per_s']:.2f}x "
                  f"(params {by[ours, False]['params_M']:.2f} M vs {by[theirs, False]['params_M']:.2f} M)")
    for new, old, what in (('base', 'base_inst', 'batch norm (NCHW) vs instance norm (channels-last)'),
                           ('base_inst', 'base_inst_nchw',
                            'instance norm, channels-last GroupNorm vs NCHW InstanceNorm2d'),
                           ('base_ckpt', 'base', 'blocks recomputed in backward vs activations kept'),
                           ('vnet', 'vnet_im2col', '3D convolutions on oneDNN vs PyTorch\'s choice at batch 1'),
                           ('vnet_k3', 'vnet', '3 x 3 x 3 convolutions vs 5 x 5 x 5'),
                           *((f'{m}_compile', m, 'torch.compile vs eager')
                             for m in ('unet', 'base_inst', 'base_cls', 'cascade', 'vnet')),
                           *((f'{m}_slab35', m, 'per output slice: slabs of 35 slices vs 19')
                             for m in ('base_cls', 'base_cls_compile')),
                           ('base_cls_compile_slab35', 'base_cls', 'per output slice: compiled on slabs of 35 vs eager '
                            'on 19'),
                           ('base_cls_compile_slab35', 'base', 'per output slice: with its class head, compiled, on '
                            'slabs of 35 vs without, eager, on 19')):
        for defended in (False, True):
            if (new, defended) in by and (old, defended) in by:
                print(f"  {new} / {old} throughput ({what}{', FGSM' if defended else ''}): "
                      f"{by[new, defended]['slices_per_s'] / by[old, defended]['slices_per_s']:.2f}x")
    for m in a.only:
        if (m, False) in by and 'grad_gap' in by[m, False]:
            r = by[m, False]
            print(f"  {m}: first call (compiling, checking) {r['compile_s']:.0f} s; relative gradient difference from "
                  f"eager on the same batch: {r['grad_gap']['parameters']:.1e} (parameters), "
                  f"{r['grad_gap']['input']:.1e} (input) (the trainer refuses more than {trainer_tol():g})")
    for m in a.only:
        if (m, False) in by and (m, True) in by:
            print(f"  {m}: defended step / clean step = {by[m, True]['step_s'] / by[m, False]['step_s']:.2f}x "
                  f"(floor 1 + adv_fraction = {1 + a.adv_fraction:.1f}x: "
                  "one extra forward and backward per attacked sample)")
    if ('base_ckpt', False) in by and ('base', False) in by:
        ratio = by['base_ckpt', False]['peak_MiB'] / by['base', False]['peak_MiB']
        print(f"  base_ckpt / base peak memory: {ratio:.2f}x")
    if a.memory_batch:
        for name in ('base_ckpt', 'base') if a.memory_plain else ('base_ckpt',):
            r = child(name, False, a.memory_batch, 1)
            if r: print(f"\n{name} at batch {a.memory_batch} ({a.memory_batch * 19} slices of {a.size} x {a.size}): "
                        f"peak {r['peak_MiB'] / 1024:.1f} GiB, step {r['step_s']:.1f} s")

if __name__ == '__main__': main()
