"""A whole SynthHO split through MIHO with the paper's metrics (§6.2, Table 1): ``miho evaluate``.

For every sample of the split (one view a grasp by default) and every setting of
:data:`SETTINGS`:

* ``honet``: HoNet's coarse hand and object, as they are;
* ``obman``: ObMan*'s (HoNet fine-tuned with Hasson et al.'s contact losses), as they are;
* ``miho-hand``: GeO in hand mode from HoNet's hand, driven by PiCR's field (MIHO hand-alone);
* ``miho-hand-object``: GeO moving hand and object (MIHO hand-object);
* ``truth``: the ground-truth grasp (HE = OE = 0; its PD, SIV, DD, SD are the data's own);

the metrics of :func:`miho.metrics.evaluate` (HE, OE, PD in mm, SIV in cm^3, DD in mm; SD and
its spread in mm with ``simulate``). HoNet and PiCR run once a batch; each MIHO mode refines the
same estimate.

Results are written as they come: one JSON file of per-sample rows a process
(``rows-<rank>.json``, rewritten atomically after every batch), so an interrupted evaluation
resumes where it stopped and skips the samples already done. Under ``torchrun`` (``WORLD_SIZE``
> 1) process r takes samples r, r + W, r + 2W, ...; after a barrier, rank 0 gathers every file
into the summary (``summary.md``, ``summary.csv``: the mean of each metric a setting).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from miho import files, metrics
from miho.hand import load_hand
from miho.mesh import Meshes
from miho.tables import markdown_table

__all__ = ["SETTINGS", "STAGES", "StageClock", "evaluate_split", "read_rows", "summarise"]

SETTINGS = ("honet", "obman", "miho-hand", "miho-hand-object", "truth")
_MODES = {"miho-hand": "hand", "miho-hand-object": "hand-object"}


#: the stages :func:`evaluate_split` times: HoNet, ObMan*, PiCR, GeO in each mode, the metrics
#: (HE, OE, PD, SIV, DD) and, with ``simulate``, the simulations of SD
STAGES = ("honet", "obman", "picr", "miho-hand", "miho-hand-object", "metrics", "simulate")


class StageClock:
    """Sums the wall time of named stages into ``timings`` (a dict, or None: no timing), waiting for
    the device's queued work at both ends of a stage (CUDA runs asynchronously)."""

    def __init__(self, timings: dict | None, device: torch.device) -> None:
        self.timings, self.device = timings, torch.device(device)

    @contextlib.contextmanager
    def __call__(self, stage: str):
        if self.timings is None:
            yield
            return
        self._sync()
        start = time.perf_counter()
        yield
        self._sync()
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def read_rows(out_dir: str | Path) -> list[dict]:
    """Every per-sample row written under ``out_dir`` (all processes' files), sorted by sample and setting."""
    rows = []
    for path in sorted(Path(out_dir).glob("rows-*.json")):
        rows += json.loads(path.read_text())
    return sorted(rows, key=lambda r: (r["sample"], SETTINGS.index(r["setting"])))


def summarise(rows: list[dict], settings=SETTINGS) -> tuple[list[str], list[list]]:
    """(header, table rows): each setting's number of samples and the mean of each metric."""
    names = [k for k in ("HE", "OE", "PD", "SIV", "DD", "SD", "SD std") if any(k in r for r in rows)]
    units = {"SIV": "cm^3"}
    header = ["setting", "samples"] + [f"{k} ({units.get(k, 'mm')})" for k in names]
    table = []
    for s in settings:
        mine = [r for r in rows if r["setting"] == s]
        if mine:
            table.append([s, len(mine)] + [sum(r[k] for r in mine) / len(mine) for k in names])
    return header, table


def evaluate_split(split: str = "test-seen", out_dir: str | Path = "runs/evaluate-test-seen", settings=SETTINGS,
                   views: int = 1, grasps: int | None = None, batch_size: int = 32, iterations: int = 400,
                   resolution: int = 80, simulate: bool = False, t_vc: float | None = None, honet=None, picr=None,
                   obman=None, device: str = "cpu", progress: bool = True,
                   timings: dict | None = None) -> list[dict]:  # fmt: skip
    """Evaluate ``settings`` on ``split`` (see the module docstring); returns every row gathered (on
    rank 0; a process's own rows elsewhere).

    Args:
        views, grasps: SynthHO views a grasp and an optional cap on the grasps (small runs).
        batch_size: samples a batch (HoNet, PiCR and GeO run a batch at a time).
        iterations, resolution, simulate: GeO iterations, SIV voxels per axis, whether to add SD.
        t_vc: GeO's VC threshold (default the PiCR card's). honet, picr, obman: the networks
            (default the committed ones; ObMan* is a HoNet).
        timings: a dict that receives the seconds each stage took, summed over the batches
            (:data:`STAGES`; what ``miho bench pipeline`` reports).
    """
    from miho.nets.honet import load_honet
    from miho.nets.picr import load_picr, picr_card
    from miho.pipeline import coarse_estimate, predict_field, refine
    from miho.train.picr_data import build_picr_data
    from miho.train.trainer import distributed_context

    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown or not settings:
        raise ValueError(f"settings must be some of {SETTINGS}, got {list(settings)}")
    started_group = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized()
    ctx, dev = distributed_context(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    honet = honet if honet is not None else load_honet(device=dev)
    picr = picr if picr is not None else load_picr(device=dev)
    if "obman" in settings and obman is None:
        obman = load_honet(device=dev, variant="obman")
    if t_vc is None:
        t_vc = float(picr_card(variant=picr.config.variant)["threshold"])
    hand = load_hand(device=dev)
    data = build_picr_data(split, views=views, size=honet.config.image_size, grasps=grasps, workers=0,
                           progress=progress and ctx.main)  # fmt: skip
    mine = out_dir / f"rows-{ctx.rank}.json"
    rows = json.loads(mine.read_text()) if mine.exists() else []
    done = {(r["sample"], r["setting"]) for r in rows}
    todo = [i for i in range(ctx.rank, len(data), ctx.world) if any((i, s) not in done for s in settings)]
    bar = tqdm(total=len(todo), desc=f"evaluate {split}", disable=not (progress and ctx.main))
    clock = StageClock(timings, dev)
    for chunk in torch.tensor(todo, dtype=torch.long).split(batch_size):
        b = data.batch(chunk, dev)
        objects = Meshes(b["obj_canonical"], b["obj_faces"], b["obj_mask"], b["obj_face_mask"])
        truth_objects = Meshes(b["obj_verts"], b["obj_faces"], b["obj_mask"], b["obj_face_mask"])
        true_hand = hand(b["hand_pose"], b["hand_shape"], b["hand_trans"]).vertices
        outputs = {}
        if "obman" in settings:
            with clock("obman"):
                coarse, posed = coarse_estimate(b["image"], b["K"], objects, obman, hand)
            outputs["obman"] = (coarse["hand_verts"], posed)
        if set(settings) - {"truth", "obman"}:
            with clock("honet"):
                coarse, posed = coarse_estimate(b["image"], b["K"], objects, honet, hand)
            if "honet" in settings:
                outputs["honet"] = (coarse["hand_verts"], posed)
            if set(settings) & set(_MODES):
                with clock("picr"):
                    field = predict_field(b["image"], b["K"], coarse, posed, picr, hand)
            for s, mode in _MODES.items():
                if s in settings:
                    with clock(s):
                        r = refine(coarse, posed, field, mode, hand, t_vc, iterations)
                    outputs[s] = (r.hand_verts, posed.with_verts(r.obj_verts))
        if "truth" in settings:
            outputs["truth"] = (true_hand, truth_objects)
        for s, (hand_verts, objs) in outputs.items():
            with clock("metrics"):
                columns = metrics.evaluate(hand_verts, objs, hand=hand, gt_hand_verts=true_hand,
                                           gt_obj_verts=b["obj_verts"], resolution=resolution).columns  # fmt: skip
            if simulate:
                with clock("simulate"):
                    columns = {**columns, **metrics.simulation_columns(hand.closed(hand_verts), objs)}
            for j, i in enumerate(chunk.tolist()):
                rows.append({"sample": i, "setting": s, **{k: float(v[j]) for k, v in columns.items()}})
        with files.atomic_write(mine, suffix=".json") as tmp:
            Path(tmp).write_text(json.dumps(rows))
        bar.update(len(chunk))
    bar.close()
    if ctx.world > 1:
        torch.distributed.barrier()
    if started_group:
        torch.distributed.destroy_process_group()
    if not ctx.main:
        return rows
    rows = read_rows(out_dir)
    header, table = summarise(rows, settings)
    title = f"{split}, {len({r['sample'] for r in rows})} samples, GeO {iterations} iterations, SIV at {resolution}^3"
    with files.atomic_write(out_dir / "summary.md", suffix=".md") as tmp:
        Path(tmp).write_text(f"{title}\n\n{markdown_table(header, table)}\n")
    with files.atomic_write(out_dir / "summary.csv", suffix=".csv") as tmp:
        with open(tmp, "w", newline="") as fh:
            csv.writer(fh).writerows([header, *table])
    return rows
