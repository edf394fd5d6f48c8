"""Training-step throughput, peak memory and achieved GFLOP/s of brainseg's networks next to MONAI's 2D UNet.

Each measurement runs in its own process (so peak resident memory is its own). Prints a table; asserts nothing.
    python bench/bench_models.py                 # all, CPU, 240 x 240, batch 8, 3 modalities, 9 classes
    python bench/bench_models.py --size 128 --steps 2 --only unet monai_unet
"""
import argparse, json, subprocess, sys, time, resource
import torch

MODELS = ['unet', 'monai_unet', 'base', 'base_cls', 'vnet']

class AsDict(torch.nn.Module):
    "A network that returns logits, returning {'seg': logits} as brainseg's networks do."
    def __init__(self, net): super().__init__(); self.net = net
    def forward(self, x): return {'seg': self.net(x)}

def build(name):
    from brainseg.models import UNet, BaseNet, VNet
    if name == 'unet': return UNet(3, 9), 'slice'
    if name == 'unet4': return UNet(3, 9, features=(32, 64, 128, 256)), 'slice'
    if name == 'monai_unet':
        from monai.networks.nets import UNet as MonaiUNet
        return AsDict(MonaiUNet(2, 3, 9, channels=(32, 64, 128, 256), strides=(2, 2, 2), num_res_units=2)), 'slice'
    if name == 'base': return BaseNet(3, 9, class_head=False), 'slab'
    if name == 'base_cls': return BaseNet(3, 9, class_head=True), 'slab'
    if name == 'vnet': return VNet(3, 9, kernel_size=3), 'volume'
    raise ValueError(name)

def make_batch(kind, batch, size, device):
    "Input, targets and the number of output slices per step."
    if kind == 'slice': x, t, n = torch.randn(batch, 3, size, size), torch.randint(0, 9, (batch, size, size)), batch
    elif kind == 'slab':
        x, t, n = torch.randn(batch, 3, 19, size, size), torch.randint(0, 9, (batch, 11, size, size)), batch * 11
    else: x, t, n = torch.randn(1, 3, 16, size, size), torch.randint(0, 9, (1, 16, size, size)), 16
    roi = torch.randint(0, 2, t.shape[:1] + ((t.shape[1],) if kind != 'slice' else ()) + (8,)).float()
    return {'image': x.to(device), 'target': t.to(device), 'roi': roi.to(device)}, n

def one(name, size, batch, steps, defended, device, adv_fraction=1.0):
    "Run in a child process: time training steps of one model, return figures."
    from torch.utils.flop_counter import FlopCounterMode
    from brainseg.losses import JointLoss
    from brainseg.adversarial import mix_adversarial
    torch.manual_seed(0)
    model, kind = build(name)
    model = model.to(device).train()
    loss_fn = JointLoss(cls_weight=1.0)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    data, n_slices = make_batch(kind, batch, size, device)
    def step(defended=defended):
        b = mix_adversarial(model, data, loss_fn, eps=0.1, adv_fraction=adv_fraction) if defended else data
        loss, _ = loss_fn(model(b['image']), b)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    with FlopCounterMode(display=False) as fc: step(defended=False)  # the counter cannot follow autograd.grad
    flops = fc.get_total_flops()
    step()  # warm-up
    sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
    sync(); t0 = time.perf_counter()
    for _ in range(steps): step()
    sync(); dt = (time.perf_counter() - t0) / steps
    params = sum(p.numel() for p in model.parameters())
    if device == 'cuda': peak = torch.cuda.max_memory_allocated() / 2**20
    else: peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(model=name, defended=defended, params_M=params / 1e6, step_s=dt, slices_per_s=n_slices / dt,
                gflop_per_step=flops / 1e9, gflops=flops / 1e9 / dt if not defended else float('nan'), peak_MiB=peak)

def gemm_gflops(device, n=2048, reps=5):
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    if device == 'cuda': torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps): a @ b
    if device == 'cuda': torch.cuda.synchronize()
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--size', type=int, default=240); p.add_argument('--batch', type=int, default=8)
    p.add_argument('--steps', type=int, default=3); p.add_argument('--only', nargs='*', default=MODELS)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--adv-fraction', type=float, default=1.0,
                   help='share of a defended batch replaced by FGSM examples')
    p.add_argument('--child', help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        name, defended = a.child.split(':')
        print(json.dumps(one(name, a.size, a.batch, a.steps, defended == '1', a.device, a.adv_fraction))); return
    peak = gemm_gflops(a.device)
    print(f"device {a.device}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"fp32 GEMM 2048^3: {peak:.0f} GFLOP/s; input {a.size}x{a.size}, batch {a.batch}, 3 modalities, 9 classes")
    rows = []
    for name in a.only:
        for defended in (False, True):
            r = subprocess.run([sys.executable, __file__, '--child', f"{name}:{int(defended)}", '--size', str(a.size),
                                '--batch', str(a.batch), '--steps', str(a.steps), '--device', a.device,
                                '--adv-fraction', str(a.adv_fraction)],
                               capture_output=True, text=True)
            if r.returncode: print(f"{name}: failed\n{r.stderr[-2000:]}"); break
            rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
    print(f"{'model':<11}{'defended':>9}{'params M':>10}{'step s':>9}{'slices/s':>10}{'GFLOP/step':>12}{'GFLOP/s':>9}"
          f"{'of GEMM':>9}{'peak MiB':>10}")
    for r in rows:
        print(f"{r['model']:<11}{str(r['defended']):>9}{r['params_M']:>10.2f}{r['step_s']:>9.2f}{r['slices_per_s']:>10.1f}"
              f"{r['gflop_per_step']:>12.1f}{r['gflops']:>9.1f}{r['gflops'] / peak:>9.0%}{r['peak_MiB']:>10.0f}")
    by = {(r['model'], r['defended']): r for r in rows}
    print("\nratios:")
    if ('unet', False) in by and ('monai_unet', False) in by:
        print("  brainseg UNet / MONAI UNet throughput: "
              f"{by['unet', False]['slices_per_s'] / by['monai_unet', False]['slices_per_s']:.2f}x "
              f"(params {by['unet', False]['params_M']:.2f} M vs {by['monai_unet', False]['params_M']:.2f} M)")
    for m in a.only:
        if (m, False) in by and (m, True) in by:
            print(f"  {m}: defended step / clean step = {by[m, True]['step_s'] / by[m, False]['step_s']:.2f}x "
                  f"(floor 1 + adv_fraction = {1 + a.adv_fraction:.1f}x: "
                  "one extra forward and backward per attacked sample)")

if __name__ == '__main__': main()
