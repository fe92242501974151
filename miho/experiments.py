"""Experiments shared by the book, the tests and the benchmarks: perturb ground-truth grasps the
way a coarse estimate would be wrong, refine them with GeO, and score before and after
(:func:`recovery_experiment`); the paper's fitting-stage ablations, Tables 2, 3 and 5
(:func:`ablation_study`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from miho import cpf, geo, metrics
from miho.anchors import hand_regions
from miho.checks import check_tensor
from miho.hand.model import HandModel
from miho.mesh import Meshes
from miho.rotations import RigidMotion
from miho.tables import markdown_table


def perturb_hands(
    hand: HandModel,
    pose: torch.Tensor,
    trans: torch.Tensor,
    objects: Meshes,
    magnitude=(0.010, 0.020),
    joint_noise: float = 0.05,
    cone: float = 0.5,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coarse estimates of B grasps: the hand translated by ``magnitude`` metres (uniform in the
    range) in a random direction within ``cone`` radians of the direction from the hand to its
    object's centroid, so that it sinks into the object, and every joint rotation disturbed by
    N(0, joint_noise) radians.

    Returns:
        pose (B, 16, 3), trans (B, 3).
    """
    check_tensor("pose", pose, (None, 16, 3))
    B = pose.shape[0]
    g = generator or torch.Generator("cpu").manual_seed(0)
    f = dict(dtype=pose.dtype, device=g.device)
    with torch.no_grad():
        palm = hand(pose, trans=trans).vertices.mean(1)
    m = objects.vert_mask[..., None]
    centre = (objects.verts * m).sum(1) / m.sum(1)
    inward = (centre - palm) / (centre - palm).norm(dim=-1, keepdim=True)
    side = torch.randn(B, 3, generator=g, **f).to(pose.device)
    side = side - (side * inward).sum(-1, keepdim=True) * inward
    side = side / side.norm(dim=-1, keepdim=True)
    tilt = cone * torch.rand(B, 1, generator=g, **f).to(pose.device)
    d = torch.cos(tilt) * inward + torch.sin(tilt) * side
    lo, hi = magnitude
    size = lo + (hi - lo) * torch.rand(B, 1, generator=g, **f).to(pose.device)
    noise = torch.zeros_like(pose)
    noise[:, 1:] = joint_noise * torch.randn(B, 15, 3, generator=g, **f).to(pose.device)
    return pose + noise, trans + size * d


@dataclass
class Recovery:
    """Metrics of the ground truth, the perturbed start and the GeO result (each a
    :class:`miho.metrics.MetricTable`), and the GeO result itself."""

    truth: metrics.MetricTable
    before: metrics.MetricTable
    after: metrics.MetricTable
    result: geo.GeOResult

    def improved(self) -> dict[str, torch.Tensor]:
        """(B,) bool per metric: lower after GeO than before (HE, PD, SIV)."""
        return {k: self.after[k] < self.before[k] for k in ("HE", "PD", "SIV")}

    def success(self) -> torch.Tensor:
        """(B,) bool: HE, PD and SIV all lower after GeO."""
        ok = self.improved()
        return ok["HE"] & ok["PD"] & ok["SIV"]


def recovery_experiment(
    hand: HandModel,
    objects: Meshes,
    gt_pose: torch.Tensor,
    gt_trans: torch.Tensor,
    repeats: int = 1,
    seed: int = 0,
    resolution: int = 80,
    **geo_overrides,
) -> Recovery:
    """Perturb ground-truth grasps (``repeats`` times each), refine them with GeO driven by the
    ground-truth CPF, and score the truth, the start and the result."""
    objects = Meshes(*(t.repeat_interleave(repeats, 0) for t in (objects.verts, objects.faces, objects.vert_mask,
                                                                   objects.face_mask)))  # fmt: skip
    gt_pose, gt_trans = gt_pose.repeat_interleave(repeats, 0), gt_trans.repeat_interleave(repeats, 0)
    g = torch.Generator("cpu").manual_seed(seed)
    pose, trans = perturb_hands(hand, gt_pose, gt_trans, objects, generator=g)
    with torch.no_grad():
        truth = hand(gt_pose, trans=gt_trans).vertices
        start = hand(pose, trans=trans).vertices
    field = cpf.annotate(truth, objects.verts, hand_regions(hand), objects.vert_mask)
    res = geo.optimize(hand, pose, objects, field, trans=trans, **{"mode": "hand", **geo_overrides})
    score = lambda v, objs: metrics.evaluate(v, objs, hand=hand, gt_hand_verts=truth, resolution=resolution)  # noqa: E731
    return Recovery(
        truth=score(truth, objects),
        before=score(start, objects),
        after=score(res.hand_verts, objects.with_verts(res.obj_verts)),
        result=res,
    )


#: k_rpl values of the paper's Table 5 (Supp D.2); 1e-3 is the default.
K_RPL_SWEEP = (2e-4, 6e-4, 1e-3, 1.4e-3, 2e-3, 4e-3, 8e-3)

#: GeO settings of the paper's ablations, as :class:`miho.geo.GeOConfig` overrides: the contact
#: heuristics of Table 2 and the repulsive springs of Table 3.
ABLATIONS = {
    "CPF (full)": geo.BASELINES["cpf"],
    "vanilla contact": geo.BASELINES["vanilla"],
    "ObMan contact": geo.BASELINES["obman"],
    "CPF without E_rpl": geo.BASELINES["cpf without E_rpl"],
}


def k_rpl_settings(values=K_RPL_SWEEP) -> dict[str, dict]:
    """Table 5's settings: CPF with each repulsion elasticity k_rpl in ``values``."""
    return {f"k_rpl = {k:.1e}": {"k_rpl": k} for k in values}


@dataclass
class Ablation:
    """Metrics of the ground truth, the disturbed start and each GeO setting (each a
    :class:`miho.metrics.MetricTable`), and each setting's GeO time per iteration (ms, whole batch)."""

    truth: metrics.MetricTable
    start: metrics.MetricTable
    runs: dict[str, metrics.MetricTable]
    ms_per_iteration: dict[str, float]

    def rows(self, columns=("HE", "OE", "PD", "SIV", "DD")) -> list[tuple]:
        """(setting, means of ``columns``..., ms per iteration per sample) for a table; the
        ground truth and the start first (no time)."""
        B = len(self.start)
        out = [(name, *(t.mean()[c] for c in columns), None) for name, t in
               (("ground truth", self.truth), ("disturbed start", self.start))]  # fmt: skip
        out += [
            (name, *(t.mean()[c] for c in columns), self.ms_per_iteration[name] / B) for name, t in self.runs.items()
        ]
        return out

    def to_markdown(self) -> str:
        """:meth:`rows` as a Markdown table, units in the headers ("-": no time)."""
        cols = ("HE", "OE", "PD", "SIV", "DD")
        heads = ["setting", *(f"{c} ({self.start.units[c]})" for c in cols), "ms / iteration / sample"]
        return markdown_table(heads, list(self.rows(cols)))

    def stats(self, pd_tolerance: float = 0.5) -> dict[str, dict[str, float]]:
        """:func:`refinement_stats` of every setting (from the disturbed start), by setting."""
        return {name: refinement_stats(self.truth, self.start, t, pd_tolerance) for name, t in self.runs.items()}

    def stats_markdown(self, pd_tolerance: float = 0.5) -> str:
        """:meth:`stats` as a Markdown table of percentages of the B samples."""
        keys = ("HE fell", "PD fell", "SIV fell", "PD rose", "SIV rose", "PD above truth", "overshoot")
        outside = int((self.start["PD"] <= self.truth["PD"]).sum())  # "start outside" of refinement_stats
        heads = ["setting", *(f"{k} (%)" for k in keys[:-1]), f"overshoot (% of the {outside} starting outside)"]
        rows = [(name, *(100 * s[k] for k in keys)) for name, s in self.stats(pd_tolerance).items()]
        return markdown_table(heads, rows, floatfmt=".0f")


def disturbed_objects(batch: dict) -> Meshes:
    """The objects of a :func:`miho.data.synthho.collate` batch moved to their disturbed pose:
    v' = R' R^T (v - t) + t', with (R, t) the true and (R', t') the disturbed object pose."""
    true, noisy = (RigidMotion(batch[f"obj_rot{s}"], batch[f"obj_trans{s}"]) for s in ("", "_noisy"))
    verts = (noisy @ true.inverse()).points(batch["obj_verts"]) * batch["obj_mask"][..., None]
    return Meshes(verts, batch["obj_faces"], batch["obj_mask"], batch["obj_face_mask"])


def ablation_study(
    hand: HandModel,
    batch: dict,
    settings: dict[str, dict] | None = None,
    iterations: int = 400,
    resolution: int = 80,
    progress: bool = False,
) -> Ablation:
    """GeO in the hand-object mode from disturbed grasps, driven by their ground-truth CPF, under
    each setting (default :data:`ABLATIONS`), scored against the truth (HE, OE, PD, SIV, DD).

    With the true field the study isolates the fitting stage: what each contact term and the
    repulsive springs do to the same starts. (The paper's tables start from HoNet and use the
    field PiCR predicts.)

    Args:
        hand: the hand model of the batch.
        batch: a :func:`miho.data.synthho.collate` batch of a SynthHO made with a ``disturb``
            (:class:`miho.data.synthho.Disturbance`): true and disturbed hand and object poses,
            object meshes and ground-truth CPF (vc, cr, ae); or a
            :meth:`miho.train.picr_data.PiCRData.batch`.
        settings: name -> :class:`miho.geo.GeOConfig` overrides.
        iterations, resolution: GeO iterations; SIV voxels per axis.
    """
    settings = ABLATIONS if settings is None else settings
    return _refine_and_score(hand, batch, {name: (None, o) for name, o in settings.items()}, iterations, resolution,
                             progress)  # fmt: skip


def field_study(
    hand: HandModel,
    batch: dict,
    fields: dict[str, cpf.CPF | tuple[cpf.CPF, dict]],
    iterations: int = 400,
    resolution: int = 80,
    progress: bool = False,
    **overrides,
) -> Ablation:
    """GeO (hand-object mode, the same disturbed starts as :func:`ablation_study`) driven by each
    of several fields on the batch's objects (e.g. PiCR's prediction and the ground truth), scored
    against the truth; ``overrides`` are :class:`miho.geo.GeOConfig` options for every run (such as
    ``t_vc``, the contact threshold); a field given as ``(field, options)`` adds its own options
    (such as its predictor's threshold) over them."""
    spec = {name: (f, overrides) if isinstance(f, cpf.CPF) else (f[0], {**overrides, **f[1]})
            for name, f in fields.items()}  # fmt: skip
    return _refine_and_score(hand, batch, spec, iterations, resolution, progress)


def _refine_and_score(hand, batch, runs_spec: dict, iterations: int, resolution: int, progress: bool) -> Ablation:
    missing = {"hand_pose_noisy", "obj_rot_noisy", "vc", "obj_faces"} - set(batch)
    if missing:
        raise ValueError(f"the batch lacks {sorted(missing)}: make it from a SynthHO with disturb=Disturbance()")
    dev, dt = hand.device, hand.dtype
    b = {k: (v.to(dev, dt) if v.is_floating_point() else v.to(dev)) for k, v in batch.items() if torch.is_tensor(v)}
    if "hand_verts" not in b:
        with torch.no_grad():
            b["hand_verts"] = hand(b["hand_pose"], b["hand_shape"], b["hand_trans"]).vertices
    truth_objects = Meshes(b["obj_verts"], b["obj_faces"], b["obj_mask"], b["obj_face_mask"])
    start_objects = disturbed_objects(b)
    truth_field = cpf.CPF(b["vc"], b["cr"], b["ae"])
    pose, trans, shape = b["hand_pose_noisy"], b["hand_trans_noisy"], b["hand_shape"]
    with torch.no_grad():
        start_hand = hand(pose, shape, trans).vertices

    def score(hand_verts, objects):
        return metrics.evaluate(hand_verts, objects, hand=hand, gt_hand_verts=b["hand_verts"],
                                gt_obj_verts=b["obj_verts"], resolution=resolution)  # fmt: skip

    runs, times = {}, {}
    for name, (field, overrides) in runs_spec.items():
        field = truth_field if field is None else cpf.CPF(field.vc.to(dev, dt), field.cr.to(dev), field.ae.to(dev, dt))
        t0 = time.perf_counter()
        res = geo.optimize(hand, pose, start_objects, field, trans=trans, shape=shape, iterations=iterations,
                           progress=progress, **{"mode": "hand-object", **overrides})  # fmt: skip
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times[name] = (time.perf_counter() - t0) / iterations * 1e3
        runs[name] = score(res.hand_verts, start_objects.with_verts(res.obj_verts))
    return Ablation(score(b["hand_verts"], truth_objects), score(start_hand, start_objects), runs, times)


def refinement_stats(
    truth: metrics.MetricTable, start: metrics.MetricTable, after: metrics.MetricTable, pd_tolerance: float = 0.5
) -> dict[str, float]:
    """How a refinement went, sample by sample, as fractions of the B samples in [0, 1].

    Args:
        truth, start, after: the metrics (HE, PD, SIV; mm, cm^3) of the ground truth, of the
            refinement's start and of its result, on the same B samples.
        pd_tolerance: mm; a refined PD counts as above the truth's only beyond this margin.

    Returns:
        ``"HE fell"``, ``"PD fell"``, ``"SIV fell"``: the metric is lower after than at the start.
        ``"PD rose"``, ``"SIV rose"``: higher after than at the start.
        ``"PD above truth"``: the refined PD exceeds the truth's by more than ``pd_tolerance``.
        ``"start outside"``: the start is no deeper than the truth (start PD <= truth PD), so its
        hand has to come closer to the object. ``"overshoot"``: of those samples, the fraction
        ending with PD above the truth's (NaN when there are none).
    """
    for name, table in (("truth", truth), ("start", start), ("after", after)):
        missing = {"HE", "PD", "SIV"} - set(table.columns)
        if missing:
            raise ValueError(f"{name} lacks the metrics {sorted(missing)}")
        if len(table) != len(truth):
            raise ValueError(f"{name} has {len(table)} samples, truth has {len(truth)}")
    if len(truth) == 0:
        raise ValueError("the tables hold no sample")
    frac = lambda m: float(m.double().mean())  # noqa: E731
    above = after["PD"] > truth["PD"] + pd_tolerance
    outside = start["PD"] <= truth["PD"]
    return {
        **{f"{k} fell": frac(after[k] < start[k]) for k in ("HE", "PD", "SIV")},
        **{f"{k} rose": frac(after[k] > start[k]) for k in ("PD", "SIV")},
        "PD above truth": frac(above),
        "start outside": frac(outside),
        "overshoot": frac(above[outside]) if bool(outside.any()) else float("nan"),
    }
