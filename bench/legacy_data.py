"""The data path as it was before it moved to batched torch on the training device (per-sample numpy / scipy in
DataLoader workers), kept only so that bench/ can measure old against new in one run and draw both side by side.
Not part of the library: nothing in brainseg imports it."""
from __future__ import annotations
from dataclasses import dataclass, field
from typing import ClassVar
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch.utils.data import Dataset
from brainseg.labels import SCORED, IGNORE_INDEX, N_CLASSES, label_ids, training_target
from brainseg.io import SubjectError
from brainseg.data import Preprocessed, preprocess, to_network_layout, percentile_scale

def roi_presence(target, # training target (..., H, W): class ids, IGNORE_INDEX for ignored voxels; numpy or torch
                 classes=SCORED, # target class ids to report, one column each
                ):
    "Multi-hot float32 (..., len(classes)): is class `classes[k]` present in each slice? Ignored voxels do not count."
    if isinstance(target, torch.Tensor):
        t = target.flatten(-2)
        return torch.stack([(t == c).any(-1) for c in classes], -1).float()
    t = np.asarray(target)
    t = t.reshape(t.shape[:-2] + (-1,))
    return np.stack([(t == c).any(-1) for c in classes], -1).astype(np.float32)

def take_slab(volume, # (..., Z, Y, X) array
              start: int, # first slice; may be negative or run past the end
              k: int, # number of slices
              pad: str = 'replicate', # slices beyond the volume: 'replicate' the border slice, or 'constant'
              value=0, # the value of 'constant' slices
             ) -> np.ndarray:
    "Slices `start .. start+k-1` along Z of a (..., Z, Y, X) volume, a copy (..., k, Y, X)."
    if pad not in ('replicate', 'constant'): raise ValueError(f"pad must be 'replicate' or 'constant', found {pad!r}")
    n = volume.shape[-3]
    z = np.arange(start, start + k)
    out = volume[..., np.clip(z, 0, n - 1), :, :]
    outside = (z < 0) | (z >= n)
    if pad == 'constant' and outside.any(): out[..., outside, :, :] = value
    return out

def _take(volume, origin, size, value) -> np.ndarray:
    "The window (..., *size) of a (..., Z, Y, X) volume at `origin`; voxels beyond the volume hold `value`."
    out = np.full(volume.shape[:-3] + tuple(size), value, volume.dtype)
    src, dst = [], []
    for o, d, n in zip(origin, size, volume.shape[-3:]):
        a, b = min(max(o, 0), n), max(min(o + d, n), 0)
        src.append(slice(a, max(a, b)))
        dst.append(slice(a - o, max(a, b) - o))
    out[(Ellipsis, *dst)] = volume[(Ellipsis, *src)]
    return out

def _slab_starts(n: int, n_out: int, stride: int) -> list:
    "First output slices of slabs of `n_out` output slices covering 0..n-1; the last slab ends at the volume's end."
    last = max(n - n_out, 0)
    starts = list(range(0, last + 1, stride))
    return starts if starts[-1] == last else starts + [last]

class _Volumes(Dataset):
    "Shared state of the datasets: network-layout arrays, per-slice class presence, seeding and augmentation."
    def __init__(self, items, augment=None, seed: int = 0, target_fn=None, roi_classes=SCORED):
        items = [x if isinstance(x, Preprocessed) else preprocess(x) for x in items]
        if not items: raise ValueError("no subjects given")
        for p in items:
            if p.labels is None: raise SubjectError(p.id, "has no label map; training datasets need labels")
            if p.modalities != items[0].modalities:
                raise SubjectError(p.id, f"has modalities {list(p.modalities)} "
                                         f"but subject {items[0].id!r} has {list(items[0].modalities)}")
        self.ids, self.modalities = [p.id for p in items], items[0].modalities
        self.images = [np.ascontiguousarray(to_network_layout(p.image)) for p in items]  # (C, Z, Y, X) float32
        self.target_fn, self.roi_classes = target_fn or training_target, tuple(int(c) for c in roi_classes)
        self.targets = [np.ascontiguousarray(to_network_layout(self._target(p))) for p in items]  # (Z, Y, X) uint8
        self.slice_presence = [roi_presence(t, self.roi_classes) > 0 for t in self.targets]  # (Z, R) bool
        self.augment, self.seed, self.epoch = augment, int(seed), 0

    def _target(self, p: Preprocessed) -> np.ndarray:
        t = np.asarray(self.target_fn(p.labels))
        if t.shape != p.labels.shape or t.dtype.kind not in 'iu' or t.size and (t.min() < 0 or t.max() > 255):
            raise SubjectError(p.id, "target_fn must return integer classes 0..255 of the label map's shape "
                                     f"{p.labels.shape}; found dtype {t.dtype}, shape {t.shape}")
        return t.astype(np.uint8)

    def set_epoch(self, epoch: int):
        "Pick the epoch: random choices are a function of (seed, epoch, sample index) only."
        self.epoch = int(epoch)

    def rng(self, index: int, stream: int = 0) -> np.random.Generator:
        "The generator of sample `index` this epoch (stream 0: sampling, 1: augmentation)."
        return np.random.default_rng((self.seed, self.epoch, index, stream))

    def _crop(self, image, target, origin, index: int, size) -> tuple:
        "A random in-plane window of at most `size` (H, W) of a sample (shorter axes whole), drawn from stream 0."
        if not size: return image, target, origin
        rng, (h, w) = self.rng(index, 0), target.shape[-2:]
        size = (min(size[0], h), min(size[1], w))
        y, x = (int(rng.integers(n - d + 1)) for n, d in zip((h, w), size))
        return (_take(image, (0, y, x), (image.shape[-3], *size), 0),
                _take(target, (0, y, x), (target.shape[-3], *size), IGNORE_INDEX),
                (origin[0], origin[1] + y, origin[2] + x))

    def _sample(self, s: int, image, target, origin, index: int, central: int|None = None) -> dict:
        if self.augment is not None: image, target = self.augment(image, target, self.rng(index, 1))
        if central is not None:  # the target covered every image slice (for the augmentation): keep the output ones
            m = (target.shape[0] - central) // 2
            target = target[m:m + central]
        return {'image': torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
                'target': torch.from_numpy(target.astype(np.int64)),
                'roi': torch.from_numpy(roi_presence(target, self.roi_classes)),
                'subject': self.ids[s], 'slice': int(origin[0]), 'origin': torch.tensor(origin, dtype=torch.int64)}

class SlabDataset(_Volumes):
    "2.5D slabs: image (C, k, Y, X), target and roi for the central k - 2*margin slices."
    def __init__(self, items, # `Preprocessed` (or `Subject`) with labels
                 k: int = 19, # input slices per slab
                 margin: int = 4, # slices lost at each end by unpadded through-plane convolutions
                 stride: int = 1, # step between slabs, in output slices
                 pad: str = 'replicate', # input slices beyond the volume: 'replicate' or 'constant' (zero)
                 augment=None, # an `Augment`, or None
                 seed: int = 0, # seed of the augmentation
                 target_fn=None, # raw label map (X, Y, Z) -> training target; default `labels.training_target`
                 roi_classes=SCORED, # target classes whose presence 'roi' reports
                 crop=0, # random in-plane window (H, W) at most, or one size for both, in voxels; 0 = the whole slice
                ):
        crop = tuple(int(n) for n in np.broadcast_to(crop, 2))
        if min(crop) < 0 or (0 in crop and any(crop)):
            raise ValueError(f"crop must be 0 or two sizes >= 1, found {crop}")
        if not (k >= 1 and 0 <= margin and k - 2 * margin >= 1 and stride >= 1):
            raise ValueError(f"need k >= 1, margin >= 0, k - 2*margin >= 1 output slices and stride >= 1; "
                             f"found k={k}, margin={margin}, stride={stride}")
        if pad not in ('replicate', 'constant'):
            raise ValueError(f"pad must be 'replicate' or 'constant', found {pad!r}")
        super().__init__(items, augment, seed, target_fn, roi_classes)
        self.k, self.margin, self.stride, self.pad, self.n_out = k, margin, stride, pad, k - 2 * margin
        self.crop = crop if any(crop) else None
        self.index = [(s, z) for s, t in enumerate(self.targets) for z in _slab_starts(t.shape[0], self.n_out, stride)]
        self.presence = np.stack([self.slice_presence[s][z:z + self.n_out].any(0) for s, z in self.index])  # (N, R)

    def __len__(self): return len(self.index)
    def __getitem__(self, i: int) -> dict:
        i = range(len(self))[i]
        s, z = self.index[i]
        image = take_slab(self.images[s], z - self.margin, self.k, self.pad)
        # an augmentation that draws intensities from the labels (`randomize.Randomize`) needs the labels of every
        # image slice; the target is cut back to the output slices after it
        whole = getattr(self.augment, 'labels_of_every_slice', False)
        target = take_slab(self.targets[s], z - self.margin if whole else z, self.k if whole else self.n_out,
                           'constant', IGNORE_INDEX)
        return self._sample(s, *self._crop(image, target, (z, 0, 0), i, self.crop), i,
                            central=self.n_out if whole else None)

class SliceDataset(SlabDataset):
    "2D slices: image (C, Y, X), target (Y, X), roi (R,)."
    def __init__(self, items, # `Preprocessed` (or `Subject`) with labels
                 augment=None, # an `Augment`, or None
                 seed: int = 0, # seed of the crop windows and the augmentation
                 target_fn=None, # raw label map (X, Y, Z) -> training target; default `labels.training_target`
                 roi_classes=SCORED, # target classes whose presence 'roi' reports
                 crop=0, # random in-plane window (H, W) at most, or one size for both, in voxels; 0 = the whole slice
                ):
        super().__init__(items, k=1, margin=0, augment=augment, seed=seed, target_fn=target_fn,
                         roi_classes=roi_classes, crop=crop)
    def __getitem__(self, i: int) -> dict:
        d = super().__getitem__(i)
        return {**d, 'image': d['image'][:, 0], 'target': d['target'][0], 'roi': d['roi'][0]}

class PatchDataset(_Volumes):
    "3D patches: image (C, D, H, W), target (D, H, W), roi (D, R); centred on `classes` with probability `p_class`."
    def __init__(self, items, # `Preprocessed` (or `Subject`) with labels
                 size=(16, 64, 64), # patch (D, H, W) in voxels, network layout
                 per_subject: int = 8, # patches per subject and epoch
                 p_class: float = 0.5, # probability that a patch is centred on one of `classes`
                 classes=None, # ids or codes to centre on (target ids with `target_fn`); default `roi_classes`
                 augment=None, # an `Augment`, or None
                 seed: int = 0, # seed of the patch positions and the augmentation
                 target_fn=None, # raw label map (X, Y, Z) -> training target; default `labels.training_target`
                 roi_classes=SCORED): # target classes whose presence 'roi' reports
        size = tuple(int(n) for n in np.broadcast_to(size, 3))
        if min(size) < 1 or per_subject < 1 or not 0 <= p_class <= 1:
            raise ValueError(f"need size >= 1 per axis, per_subject >= 1 and 0 <= p_class <= 1; "
                             f"found size={size}, per_subject={per_subject}, p_class={p_class}")
        if classes is None: classes = roi_classes
        self.classes = label_ids(classes) if target_fn is None else tuple(int(c) for c in classes)
        if target_fn is None and any(c >= N_CLASSES for c in self.classes):
            raise ValueError(f"classes must be network classes 0..{N_CLASSES - 1}, found {self.classes} "
                             "(ignore labels cannot be centres)")
        super().__init__(items, augment, seed, target_fn, roi_classes)
        self.size, self.per_subject, self.p_class = size, per_subject, p_class
        # flat indices of the voxels of each class, per subject
        self.voxels = [{c: np.flatnonzero(t == c) for c in self.classes} for t in self.targets]

    def __len__(self): return len(self.ids) * self.per_subject
    def origin(self, i: int) -> tuple:
        "Corner (z, y, x) of patch `i` this epoch."
        s, rng, shape = i // self.per_subject, self.rng(i), self.targets[i // self.per_subject].shape
        present = [c for c in self.classes if self.voxels[s][c].size]
        if present and rng.random() < self.p_class:
            where = self.voxels[s][present[rng.integers(len(present))]]
            centre = np.unravel_index(where[rng.integers(where.size)], shape)
        else: centre = [rng.integers(n) for n in shape]
        return tuple(int(np.clip(c - d // 2, 0, n - d)) if n >= d else -((d - n) // 2)
                     for c, d, n in zip(centre, self.size, shape))

    def __getitem__(self, i: int) -> dict:
        i = range(len(self))[i]
        s, origin = i // self.per_subject, self.origin(i)
        image = _take(self.images[s], origin, self.size, 0)
        target = _take(self.targets[s], origin, self.size, IGNORE_INDEX)
        return self._sample(s, image, target, origin, i)

def class_aware_weights(presence, # bool (N, 8): which scored structures each sample holds
                       ) -> np.ndarray:
    "Sampling probability per sample, proportional to 1 / (fraction of samples holding its rarest structure)."
    presence = np.asarray(presence, bool)
    freq = presence.mean(0)
    w = (presence * np.where(freq > 0, 1 / np.maximum(freq, 1e-12), 0)).max(1)
    w[w == 0] = 1.0
    return w / w.sum()

@dataclass
class Augment:
    "Random in-plane flips, rotations, zooms and intensity changes, applied alike to image and target."
    flip: float = 0.5  # probability of a left-right flip
    rotate: float = 10.0  # largest in-plane rotation (degrees), uniform in +-rotate
    zoom: tuple = (0.9, 1.1)  # in-plane zoom range
    intensity_scale: tuple = (0.9, 1.1)  # multiplier of foreground intensities, per channel
    intensity_shift: tuple = (-0.1, 0.1)  # shift of foreground intensities (z-score units), per channel
    gamma: tuple = (0.8, 1.25)  # gamma range (log-uniform) on foreground intensities rescaled to [0, 1]

    def __post_init__(self):
        ranges = {'zoom': self.zoom, 'intensity_scale': self.intensity_scale,
                  'intensity_shift': self.intensity_shift, 'gamma': self.gamma}
        for name, r in ranges.items():
            if len(r) != 2 or r[0] > r[1]:
                raise ValueError(f"{name} must be a range (low, high) with low <= high, found {r}")
        if not 0 <= self.flip <= 1 or self.rotate < 0 or min(self.zoom[0], self.gamma[0]) <= 0:
            raise ValueError(f"need 0 <= flip <= 1, rotate >= 0, zoom and gamma > 0; found flip={self.flip}, "
                             f"rotate={self.rotate}, zoom={self.zoom}, gamma={self.gamma}")

    def __call__(self, image: np.ndarray, # float32 (C, D, H, W)
                 target: np.ndarray, # (D, H, W) training target
                 rng: np.random.Generator) -> tuple:
        "Augmented copies (image, target)."
        img = torch.from_numpy(np.array(image, dtype=np.float32))  # copies: the caller's arrays stay as they were
        tgt = torch.from_numpy(np.array(target))
        if rng.random() < self.flip: img, tgt = img.flip(-1), tgt.flip(-1)
        theta, zoom = np.deg2rad(rng.uniform(-self.rotate, self.rotate)), rng.uniform(*self.zoom)
        if theta != 0 or zoom != 1: img, tgt = _rotate_zoom(img, tgt, theta, zoom)
        for ch in img:  # in place, one pass over the channel per operation
            bg = ch == 0
            if bg.all(): continue
            lo, hi = ch.masked_fill(bg, float('inf')).amin(), ch.masked_fill(bg, -float('inf')).amax()
            gamma = np.exp(rng.uniform(*np.log(self.gamma)))
            scale, shift = rng.uniform(*self.intensity_scale), rng.uniform(*self.intensity_shift)
            if hi > lo and gamma != 1:  # lo + (hi - lo) * ((v - lo) / (hi - lo)) ** gamma, scaled and shifted
                ch.sub_(lo).div_(hi - lo).clamp_(min=0).pow_(gamma).mul_((hi - lo) * scale).add_(lo * scale + shift)
            else: ch.mul_(scale).add_(shift)
            ch.masked_fill_(bg, 0)
        return img.numpy(), tgt.numpy()

def _rotate_zoom(image: torch.Tensor, # float32 (C, D, H, W)
                 target: torch.Tensor, # (D, H, W) integer classes
                 theta: float, # rotation, radians
                 zoom: float, # zoom factor
                ) -> tuple:
    """Every (H, W) slice rotated and zoomed about its centre: images linearly, targets to the nearest voxel; what
    comes from outside the slice is 0 in images, `IGNORE_INDEX` in targets."""
    h, w = target.shape[-2:]
    cos, sin = np.cos(theta) / zoom, np.sin(theta) / zoom  # output (y, x) -> input (y, x): [[cos, -sin], [sin, cos]]
    # the same map on grid_sample's (x, y) coordinates, each scaled to [-1, 1] (align_corners=True); built by
    # broadcasting, 10x faster than F.affine_grid's batched matrix product
    ry, rx = (h - 1) / max(w - 1, 1), (w - 1) / max(h - 1, 1)
    y, x = torch.linspace(-1, 1, h)[:, None], torch.linspace(-1, 1, w)[None, :]
    grid = torch.stack([cos * x + sin * ry * y, -sin * rx * x + cos * y], -1)[None]
    sample = lambda a, mode: F.grid_sample(a.reshape(1, -1, h, w), grid, mode=mode, padding_mode='zeros',
                                           align_corners=True).reshape(a.shape)
    # targets are sampled less IGNORE_INDEX, so that the zeros brought in from outside become IGNORE_INDEX
    moved = sample(target.float() - IGNORE_INDEX, 'nearest') + IGNORE_INDEX
    return sample(image, 'bilinear'), moved.round().to(target.dtype)


def _spatial_only() -> Augment:
    return Augment(rotate=15.0, zoom=(0.85, 1.15), intensity_scale=(1.0, 1.0), intensity_shift=(0.0, 0.0),
                   gamma=(1.0, 1.0))

def _unit_scale(image: np.ndarray) -> np.ndarray:
    "`percentile_scale` per channel; a channel with nothing positive (a slice of air) stays zero."
    out = np.zeros(image.shape, np.float32)
    for c, ch in enumerate(image):
        if (ch > 0).any() or (ch < 0).any(): out[c] = percentile_scale(ch[None])[0][0]
    return out

def intensity_groups(reference: np.ndarray, # real image (D, H, W) scaled by `percentile_scale` (air near 0)
                     target: np.ndarray, # training target (D, H, W): classes 0..N_CLASSES-1, IGNORE_INDEX
                     bands: int = 3, # intensity bands per class
                     air: float = 0.1, # background darker than this (in `reference`) is air: band 0
                    ) -> np.ndarray:
    "Group of every voxel, class * bands + band: classes split into intensity bands of the real image (int64 D, H, W)."
    cls = np.where(target == IGNORE_INDEX, N_CLASSES, target).astype(np.int64)
    cls[(target == IGNORE_INDEX) & (reference < air)] = 0  # beyond a rotated or padded edge: air
    band = np.zeros(cls.shape, np.int64)
    for c in np.unique(cls):
        m = cls == c
        if c == 0:  # background: air, then bands - 1 quantile bands of head tissue
            head = m & (reference >= air)
            if bands > 1 and head.any():
                cuts = np.quantile(reference[head], np.linspace(0, 1, bands)[1:-1])
                band[head] = 1 + np.searchsorted(cuts, reference[head])
        elif bands > 1:
            cuts = np.quantile(reference[m], np.linspace(0, 1, bands + 1)[1:-1])
            band[m] = np.searchsorted(cuts, reference[m])
    return cls * bands + band

@dataclass
class Randomize:
    "Domain randomization of a training sample: random contrast per structure, artefacts and head, label map kept."
    p_synth: float = 0.8  # probability that a sample's intensities are synthesized from its label map
    bands: int = 3  # intensity bands per structure (sub-structure variation) and of the head
    band_offset: float = 0.08  # std of a band's mean around its structure's mean
    within_std: tuple = (0.01, 0.06)  # range of the voxel noise std within a band
    mix: tuple = (0.0, 0.5)  # range of the weight of the real image mixed into a synthesized one
    air: tuple = (0.0, 0.08)  # range of the mean intensity of air
    blur: tuple = (0.0, 1.0)  # range of the Gaussian blur sigma (voxels), in-plane and, for slabs, through-plane
    resolution: tuple = (1.0, 2.5)  # range of the in-plane down-sampling factor (then back up)
    bias: float = 0.3  # largest std of the log bias field (smooth, 4 x 4 control points per slice)
    gamma: float = 0.25  # std of log gamma
    noise: tuple = (0.0, 0.05)  # range of the Rician noise sigma (foreground scale is about 1)
    p_strip: float = 0.3  # probability of a skull-stripped sample
    p_partial: float = 0.2  # probability of a partly removed head
    partial_keep: tuple = (2.0, 25.0)  # range of head kept around the intracranial labels, partly removed (voxels)
    spatial: Augment|None = field(default_factory=_spatial_only)  # pose: flips, rotations, zooms (None: off)
    # slab datasets pass the labels of every image slice (contrast and head come from them), not only the output ones
    labels_of_every_slice: ClassVar[bool] = True

    def __post_init__(self):
        for name in ('within_std', 'mix', 'air', 'blur', 'resolution', 'noise', 'partial_keep'):
            r = getattr(self, name)
            if len(r) != 2 or r[0] > r[1] or r[0] < 0:
                raise ValueError(f"{name} must be a range (low, high) with 0 <= low <= high, found {r}")
        if not (0 <= self.p_synth <= 1 and 0 <= self.p_strip and 0 <= self.p_partial
                and self.p_strip + self.p_partial <= 1):
            raise ValueError(f"need probabilities in [0, 1] with p_strip + p_partial <= 1; found "
                             f"p_synth={self.p_synth}, p_strip={self.p_strip}, p_partial={self.p_partial}")
        if self.bands < 1 or self.resolution[0] < 1 or self.mix[1] > 1:
            raise ValueError(f"need bands >= 1, resolution >= 1 and mix <= 1; found bands={self.bands}, "
                             f"resolution={self.resolution}, mix={self.mix}")

    def contrast(self, real: np.ndarray, # real images (C, D, H, W) scaled by `percentile_scale`
                 target: np.ndarray, # training target (D, H, W)
                 rng: np.random.Generator) -> np.ndarray:
        "Step 2: a Gaussian mixture per class and band, drawn per channel, optionally mixed with the real image."
        groups = intensity_groups(real[0], target, self.bands)
        n_groups = (N_CLASSES + 1) * self.bands
        out = np.empty(real.shape, np.float32)
        for c in range(real.shape[0]):
            means = (np.repeat(rng.uniform(0, 1, N_CLASSES + 1), self.bands)
                     + rng.normal(0, self.band_offset, n_groups))
            means[0] = rng.uniform(*self.air)
            stds = rng.uniform(*self.within_std, n_groups)
            x = means[groups] + stds[groups] * rng.standard_normal(groups.shape)
            w = rng.uniform(*self.mix)
            out[c] = np.clip((1 - w) * x + w * real[c], 0, None)
        return out

    def artefacts(self, image: np.ndarray, # images (C, D, H, W), foreground about 1
                  rng: np.random.Generator) -> np.ndarray:
        "Step 3: blur and slice thickness, lower in-plane resolution, bias field, gamma, Rician noise."
        C, D, H, W = image.shape
        s, sz = rng.uniform(*self.blur), rng.uniform(*self.blur) if D > 1 else 0.0
        if s > 0 or sz > 0: image = ndimage.gaussian_filter(image, (0, sz, s, s), mode='nearest')
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).reshape(C * D, 1, H, W)
        f = rng.uniform(*self.resolution)
        if f > 1.05:
            low = F.interpolate(x, size=(max(2, round(H / f)), max(2, round(W / f))), mode='area')
            x = F.interpolate(low, size=(H, W), mode='bilinear', align_corners=False)
        log_bias = torch.from_numpy(rng.normal(0, rng.uniform(0, self.bias), (C, 1, 4, 4)).astype(np.float32))
        bias = F.interpolate(log_bias, size=(H, W), mode='bicubic', align_corners=True).exp()
        x = x.reshape(C, D, H, W) * bias
        gamma = torch.from_numpy(np.exp(rng.normal(0, self.gamma, (C, 1, 1, 1))).astype(np.float32))
        x = x.clamp_min(0) ** gamma
        sigma = rng.uniform(*self.noise)
        n1, n2 = (torch.from_numpy(rng.standard_normal(x.shape, dtype=np.float32)) * sigma for _ in range(2))
        return ((x + n1) ** 2 + n2 ** 2).sqrt().numpy()

    def head(self, image: np.ndarray, # images (C, D, H, W)
             target: np.ndarray, # training target (D, H, W); 0 = outside the intracranial labels
             rng: np.random.Generator) -> np.ndarray:
        "Step 4: the head kept, partly removed or stripped (zeroed outside the labels)."
        u, inside = rng.random(), target != 0
        if u < self.p_strip: return np.where(inside, image, 0).astype(np.float32)
        if u < self.p_strip + self.p_partial:
            keep = rng.uniform(*self.partial_keep)
            far = np.stack([ndimage.distance_transform_edt(~sl) > keep if sl.any() else np.ones_like(sl)
                            for sl in inside])
            return np.where(far, 0, image).astype(np.float32)
        return image

    def __call__(self, image: np.ndarray, # float32 (C, D, H, W): a sample's real images (any normalization)
                 target: np.ndarray, # (D, H, W) training target
                 rng: np.random.Generator) -> tuple:
        "A randomized copy (image, target): new intensities and artefacts; the target moves only with the pose."
        if self.spatial is not None: image, target = self.spatial(image, target, rng)
        real = _unit_scale(np.asarray(image, np.float32))
        x = self.contrast(real, target, rng) if rng.random() < self.p_synth else real
        x = self.head(self.artefacts(x, rng), target, rng)
        return _unit_scale(x), np.ascontiguousarray(target)


def pad_collate(samples: list) -> dict:
    "Batch samples of any in-plane (and depth) sizes: images padded with 0, targets with `IGNORE_INDEX`, at the end."
    out = {}
    for key in samples[0]:
        vals = [s[key] for s in samples]
        if not torch.is_tensor(vals[0]):
            out[key] = vals
            continue
        size = [max(v.shape[d] for v in vals) for d in range(vals[0].dim())]
        fill = IGNORE_INDEX if key == 'target' else 0
        out[key] = torch.stack([F.pad(v, [p for d in reversed(range(v.dim())) for p in (0, size[d] - v.shape[d])],
                                      value=fill)
                                if list(v.shape) != size else v for v in vals])
    return out


def legacy_dataset(kind: str, items: list, augment: str, k: int = 19, margin: int = 4, patch=(16, 64, 64), seed=0):
    "The dataset the trainer built: `kind` 'slice' / 'slab' / 'patch', `augment` 'none' / 'standard' / 'randomize'."
    aug = {'none': None, 'standard': Augment(), 'randomize': Randomize()}[augment]
    if kind == 'slab': return SlabDataset(items, k=k, margin=margin, augment=aug, seed=seed)
    if kind == 'slice': return SliceDataset(items, augment=aug, seed=seed)
    return PatchDataset(items, size=patch, augment=aug, seed=seed)
