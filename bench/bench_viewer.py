"""Time from a slider change to a new image in brainseg's viewers, against a matplotlib redraw of the same slice.

On a 240 x 240 x 48 template subject (MRBrainS18's grid): one axial panel (the goal: under 50 ms), the subject
viewer (axial, coronal and sagittal redrawn on each step) and the comparison view (truth and three predictions).
The time is measured in the kernel, from setting the slider's value to the PNG bytes of every panel being set on
its `ipywidgets.Image`, i.e. what the kernel does before the browser gets the new image (the transfer over the
websocket and the browser's decoding come on top). The peer, in the same run, draws the same slice with its overlay
as an ipympl-style redraw would: `imshow` of the image and the label overlay, then the figure to PNG.
Prints medians over the steps and ratios; asserts nothing.
    python bench/bench_viewer.py
    python bench/bench_viewer.py --steps 40
"""
import argparse, io, statistics, time
import numpy as np
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
from brainseg.template import make_template_subject
from brainseg.viewer import SliceViewer, Panel, subject_viewer, compare_viewer, overlay, axial

def step_times(viewer, steps: int) -> list:
    "Seconds per slider step, moving the axial slice through the middle of the volume."
    z = viewer.position[2]
    values = [z.min + (z.max - z.min) // 4 + k % ((z.max - z.min) // 2) for k in range(steps)]
    out = []
    for v in values:
        if v == z.value: v += 1
        t = time.perf_counter()
        z.value = v
        out.append(time.perf_counter() - t)
    return out

def matplotlib_times(subject, steps: int) -> list:
    "Seconds per redraw of one axial slice with its overlay in a matplotlib figure, written as PNG."
    t1, out = subject.images['T1'], []
    fig, ax = plt.subplots(figsize=(3, 3), dpi=100)
    for k in range(steps):
        z = 12 + k % 24
        t = time.perf_counter()
        ax.clear()
        ax.imshow(axial(t1, z), cmap='gray', origin='lower', vmin=0, vmax=np.percentile(t1, 99.5))
        ax.imshow(overlay(axial(subject.labels, z)), origin='lower', interpolation='nearest')
        ax.set_axis_off()
        fig.savefig(io.BytesIO(), format='png')
        out.append(time.perf_counter() - t)
    plt.close(fig)
    return out

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--steps', type=int, default=20, help='slider steps per case (default: %(default)s)')
    p.add_argument('--size', type=int, default=300, help='pixels of the longest side of a panel (default: %(default)s)')
    args = p.parse_args()
    s = make_template_subject(0, shape=(240, 240, 48))
    preds = {n: np.roll(s.labels, k, axis=0) for n, k in (('cascade', 1), ('unet', 2), ('vnet', -2))}
    cases = {'one axial panel': SliceViewer(s, [Panel('labels', s.labels)], size=args.size),
             'subject viewer (3 planes)': subject_viewer(s, size=args.size),
             'comparison (truth + 3 predictions)': compare_viewer(s, preds, size=args.size)}
    print(f"subject {s.shape}, panels of {args.size} px, median of {args.steps} steps")
    peer = statistics.median(matplotlib_times(s, args.steps)) * 1000
    print(f"{'matplotlib redraw of one slice (peer)':40s} {peer:7.1f} ms")
    for name, viewer in cases.items():
        ms = statistics.median(step_times(viewer, args.steps)) * 1000
        print(f"{name:40s} {ms:7.1f} ms   {peer / ms:5.1f}x the peer's speed per step")

if __name__ == '__main__': main()
