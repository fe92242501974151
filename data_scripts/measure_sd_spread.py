"""Measure how much simulation displacement (SD) moves under sub-millimetre jitters of the hand.

    python data_scripts/measure_sd_spread.py [--grasps 30] [--runs 5] [--radius 1e-4] [--seed 0] [--workers 2]

Draws ``--grasps`` grasps of the committed library (seeded), and simulates each (its stored
gravity, the object in its own frame) three ways: one run on the unmoved hand (as the library
was filtered), ``--runs`` runs on the hand moved by the seeded offsets of
``miho.simulation.jitter_offsets`` (the default of ``simulation_displacement``), and the
published ObMan protocol (``miho.simulation.OBMAN``). Prints two Markdown tables (mm): a summary
over the grasps and the grasps whose runs spread most.
"""

import argparse
import dataclasses
import time

import numpy as np
import torch

from miho.data.grasps import LIBRARY_SIMULATION, load_library
from miho.data.synthho import library_objects
from miho.hand import load_hand
from miho.simulation import OBMAN, SimSettings, simulation_displacement


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grasps", type=int, default=30)
    ap.add_argument("--runs", type=int, default=SimSettings().jitter_runs, help="jittered runs per grasp")
    ap.add_argument("--radius", type=float, default=SimSettings().jitter_radius, help="jitter radius, metres")
    ap.add_argument("--seed", type=int, default=0, help="which grasps")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    hand, lib = load_hand(), load_library()
    objects = {o.name: o for o in library_objects(lib)}
    pick = np.sort(np.random.default_rng(args.seed).choice(len(lib), args.grasps, replace=False))
    idx = torch.as_tensor(pick)
    with torch.no_grad():
        cv, cf = hand.closed(hand(lib.pose[idx], lib.shape[idx], lib.trans[idx]).vertices)
    common = dict(
        hand_verts=cv.double().numpy(), hand_faces=cf.numpy(),
        obj_verts=[objects[lib.object[i]].verts.double().numpy() for i in pick],
        obj_faces=[objects[lib.object[i]].faces.numpy() for i in pick],
        gravity=(9.8 * lib.gravity[idx]).double().numpy(), workers=args.workers, progress=False,
    )  # fmt: skip
    t0 = time.perf_counter()
    single = simulation_displacement(settings=LIBRARY_SIMULATION, **common)
    t1 = time.perf_counter()
    jittered = dataclasses.replace(SimSettings(), jitter_runs=args.runs, jitter_radius=args.radius)
    runs = simulation_displacement(settings=jittered, per_run=True, **common)
    obman = simulation_displacement(settings=OBMAN, **common)
    t2 = time.perf_counter()
    mean, std = runs.mean(1), runs.std(1)
    span = runs.max(1) - runs.min(1)
    stored = lib.sd[idx].double().numpy()
    print(f"{args.grasps} library grasps (seed {args.seed}), {args.runs} jittered runs each (hand moved within "
          f"{1000 * jittered.jitter_radius:.4g} mm); {1000 * (t1 - t0) / args.grasps:.0f} ms per run, "
          f"{t2 - t0:.0f} s in all, {args.workers} processes\n")  # fmt: skip
    print("| SD (mm) | mean over grasps | median | max |")
    print("|---|---|---|---|")
    rows = [
        ("single run, unmoved hand (library filter)", single),
        (f"jittered: mean of {args.runs} runs", mean),
        (f"jittered: std of {args.runs} runs", std),
        (f"jittered: max - min of {args.runs} runs", span),
        ("abs(single - jittered mean)", np.abs(single - mean)),
        ("ObMan protocol (OBMAN), single run", obman),
    ]
    for name, x in rows:
        print(f"| {name} | {x.mean():.2f} | {np.median(x):.2f} | {x.max():.2f} |")
    same = int((np.abs(single - stored) < 0.01).sum())
    print(f"\nsingle run equals the stored library SD (to 0.01 mm) on {same}/{args.grasps}; SD >= 20 mm (would be "
          f"rejected): single {(single >= 20).sum()}, jittered mean {(mean >= 20).sum()}, any jittered run "
          f"{(runs.max(1) >= 20).sum()}, ObMan {(obman >= 20).sum()}\n")  # fmt: skip
    print("| grasp | object | single | jittered runs | mean | std | ObMan |")
    print("|---|---|---|---|---|---|---|")
    for j in np.argsort(-span)[:5]:
        print(f"| {pick[j]} | {lib.object[pick[j]]} | {single[j]:.2f} | {' / '.join(f'{r:.1f}' for r in runs[j])} | "
              f"{mean[j]:.2f} | {std[j]:.2f} | {obman[j]:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
