"""Experiments shared by the book, the tests and the benchmarks: perturb ground-truth grasps the
way a coarse estimate would be wrong, refine them with GeO, and score before and after
(:func:`recovery_experiment`); the paper's ablations (§6.4, Supp D.2; :func:`ablation_study`).

An ablation refines the same :class:`Starts` under several GeO settings. The starts are HoNet's
estimates (:func:`honet_starts`, the paper's protocol) or the data's disturbed grasps
(:func:`disturbed_starts`, the fitting stage alone), driven by PiCR's predicted field or the
ground truth (:data:`FIELDS`); Fig. 7 starts from a flat hand (:func:`flat_starts`), Fig. 15 from
true grasps with a twisted thumb (:func:`twisted_starts`). The settings: the contact terms and the
repulsive springs (:data:`ABLATIONS`, Tables 2 and 3), k_rpl (:func:`k_rpl_settings`, Table 5),
the pose space (:func:`pose_space_settings`, Table 6), L_anat (:data:`ANATOMY`, Figs. 7 and 15),
with :func:`pose_abnormality` and :func:`twist_degrees` to measure the poses."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch

from miho import amano, cpf, geo, metrics
from miho.anchors import hand_regions
from miho.checks import check_tensor
from miho.hand.model import FINGER_JOINTS, FINGERS, HandModel
from miho.hand.pca import PosePCA
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
class Starts:
    """B grasps for GeO to refine: where it starts, the field that drives it, and the truth the
    result is scored against.

    pose (B, 16, 3) axis-angle, radians; shape (B, S); trans (B, 3), metres: the start hand.
    objects: the objects where GeO starts (:class:`~miho.mesh.Meshes`, metres). field: the CPF on
    their vertices; t_vc: GeO's vertex-contact threshold for it. truth_pose (B, 16, 3), truth_hand
    (B, V, 3): the true hand's pose and vertices; truth_objects: the objects at their true pose.
    name: what the starts are, for tables ("disturbed start", "HoNet", ...).
    """

    pose: torch.Tensor
    shape: torch.Tensor
    trans: torch.Tensor
    objects: Meshes
    field: cpf.CPF
    t_vc: float
    truth_pose: torch.Tensor
    truth_hand: torch.Tensor
    truth_objects: Meshes
    name: str = "start"

    def __len__(self) -> int:
        return self.pose.shape[0]

    def replace(self, **changes) -> "Starts":
        """A copy with some fields replaced."""
        return dataclasses.replace(self, **changes)

    def take(self, idx) -> "Starts":
        """The samples ``idx`` (a slice, or a (k,) long tensor) of the batch."""

        def meshes(m: Meshes) -> Meshes:
            return Meshes(m.verts[idx], m.faces[idx], m.vert_mask[idx], m.face_mask[idx])

        f = cpf.CPF(self.field.vc[idx], self.field.cr[idx], self.field.ae[idx])
        return Starts(self.pose[idx], self.shape[idx], self.trans[idx], meshes(self.objects), f, self.t_vc,
                      self.truth_pose[idx], self.truth_hand[idx], meshes(self.truth_objects), self.name)  # fmt: skip


#: the field a study drives GeO with: PiCR's prediction or the ground truth
FIELDS = ("predicted", "truth")
#: where a study starts: HoNet's estimate (the paper's ablations) or the data's disturbed grasp
START_KINDS = ("honet", "disturbed")
#: the thumb joints whose twist the twist-correction study disturbs (MCP and IP: no twist allowed)
THUMB_TWIST_JOINTS = (14, 15)


def _on_hand(hand: HandModel, batch: dict) -> dict:
    return {k: (v.to(hand.device, hand.dtype) if v.is_floating_point() else v.to(hand.device))
            for k, v in batch.items() if torch.is_tensor(v)}  # fmt: skip


def _require(batch: dict, keys: set, what: str) -> None:
    missing = keys - set(batch)
    if missing:
        raise ValueError(f"the batch lacks {sorted(missing)}: {what}")


def _truth(hand: HandModel, b: dict) -> dict:
    with torch.no_grad():
        verts = b.get("hand_verts")
        if verts is None:
            verts = hand(b["hand_pose"], b["hand_shape"], b["hand_trans"]).vertices
    return dict(truth_pose=b["hand_pose"], truth_hand=verts,
                truth_objects=Meshes(b["obj_verts"], b["obj_faces"], b["obj_mask"], b["obj_face_mask"]))  # fmt: skip


def _field(hand: HandModel, b: dict, field: str, picr, coarse: dict, objects: Meshes) -> tuple[cpf.CPF, float]:
    """The ground-truth CPF (threshold :data:`miho.cpf.T_VC`) or PiCR's on ``objects`` (with
    ``coarse``'s hand for a hand-aware PiCR; threshold from its card)."""
    if field not in FIELDS:
        raise ValueError(f"field must be one of {FIELDS}, got {field!r}")
    if field == "truth":
        return cpf.CPF(b["vc"], b["cr"], b["ae"]), cpf.T_VC
    from miho.nets.picr import load_picr, picr_card
    from miho.pipeline import predict_field

    _require(b, {"image", "K"}, "a predicted field needs the images (miho.train.picr_data.PiCRData.batch)")
    picr = picr if picr is not None else load_picr(device=hand.device)
    with torch.no_grad():
        f = predict_field(b["image"].float(), b["K"].float(), coarse, objects.to(hand.device, torch.float32), picr,
                          hand)  # fmt: skip
    f = cpf.CPF(f.vc.to(hand.dtype), f.cr, f.ae.to(hand.dtype))
    return f, float(picr_card(variant=picr.config.variant)["threshold"])


def disturbed_starts(hand: HandModel, batch: dict, field: str = "truth", picr=None) -> Starts:
    """GeO from the batch's disturbed grasps (hand and object, :class:`~miho.data.synthho.Disturbance`),
    driven by the ground-truth field or PiCR's prediction on the disturbed objects.

    Args:
        batch: a :func:`miho.data.synthho.collate` batch of a SynthHO made with ``disturb`` or a
            :meth:`miho.train.picr_data.PiCRData.batch` (the only kind with images, which a
            predicted field needs).
        field: one of :data:`FIELDS`. picr: the PiCR (default the committed one).
    """
    _require(batch, {"hand_pose_noisy", "obj_rot_noisy", "vc", "obj_faces"},
             "make it from a SynthHO with disturb=Disturbance()")  # fmt: skip
    b = _on_hand(hand, batch)
    objects = disturbed_objects(b)
    coarse = dict(hand_pose=b["hand_pose_noisy"], hand_shape=b["hand_shape"], hand_trans=b["hand_trans_noisy"])
    f, t_vc = _field(hand, b, field, picr, coarse, objects)
    return Starts(b["hand_pose_noisy"], b["hand_shape"], b["hand_trans_noisy"], objects, f, t_vc, **_truth(hand, b),
                  name="disturbed start")  # fmt: skip


def honet_starts(hand: HandModel, batch: dict, field: str = "predicted", honet=None, picr=None) -> Starts:
    """GeO from HoNet's estimate (the paper's ablations, §6.4), driven by PiCR's field on HoNet's
    objects or by the ground-truth field on them (the same starts: what the prediction costs).

    Args:
        batch: a :meth:`miho.train.picr_data.PiCRData.batch` (images, intrinsics, canonical meshes).
        field: one of :data:`FIELDS`. honet, picr: the networks (default the committed ones).
    """
    from miho.nets.honet import load_honet
    from miho.pipeline import coarse_estimate

    _require(batch, {"image", "K", "obj_canonical", "vc"}, "use miho.train.picr_data.PiCRData.batch")
    b = _on_hand(hand, batch)
    honet = honet if honet is not None else load_honet(device=hand.device)
    canonical = Meshes(b["obj_canonical"].float(), b["obj_faces"], b["obj_mask"], b["obj_face_mask"])
    with torch.no_grad():
        coarse, posed = coarse_estimate(b["image"].float(), b["K"].float(), canonical, honet, hand)
    posed = posed.to(hand.device, hand.dtype)
    f, t_vc = _field(hand, b, field, picr, coarse, posed)
    return Starts(coarse["hand_pose"].to(hand.dtype), coarse["hand_shape"].to(hand.dtype),
                  coarse["hand_trans"].to(hand.dtype), posed, f, t_vc, **_truth(hand, b), name="HoNet")  # fmt: skip


def flat_starts(starts: Starts) -> Starts:
    """The same starts with every finger joint at zero (a flat hand; wrist and translation kept):
    Fig. 7's start."""
    pose = starts.pose.clone()
    pose[:, 1:] = 0.0
    return starts.replace(pose=pose, name="flat hand")


def twist_pose(hand: HandModel, pose: torch.Tensor, degrees, joints=THUMB_TWIST_JOINTS,
               shape: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """(B, 16, 3) pose with ``degrees`` (a number or (B,)) added to the twist angle (the rotation
    about the bone, A-MANO's twist axis) of each of ``joints`` (MANO ids 1-15); the other angle
    components unchanged."""
    rest = amano.rest_frames(hand, shape)
    tsb = amano.angles(pose, rest).clone()
    add = torch.deg2rad(torch.as_tensor(degrees, dtype=pose.dtype, device=pose.device)).expand(pose.shape[0])
    for j in joints:
        tsb[:, j - 1, 0] += add
    return amano.compose(tsb, rest, pose[:, 0])


def twist_degrees(hand: HandModel, pose: torch.Tensor, joints=THUMB_TWIST_JOINTS,
                  shape: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """(B,) sum of the twist angles of ``joints`` (MANO ids 1-15), degrees."""
    c = amano.angles(pose, amano.rest_frames(hand, shape))
    return torch.rad2deg(sum(c[:, j - 1, 0] for j in joints))


def twisted_starts(hand: HandModel, batch: dict, degrees: float = 30.0, field: str = "truth", picr=None) -> Starts:
    """Fig. 15's starts: the true grasps with ``degrees`` of unwanted twist added to the thumb's
    MCP and IP joints (:func:`twist_pose`), the objects at their true pose, driven by the
    ground-truth field or PiCR's prediction (which then reads the twisted hand)."""
    _require(batch, {"hand_pose", "vc", "obj_faces"}, "a SynthHO batch with its ground truth")
    b = _on_hand(hand, batch)
    truth = _truth(hand, b)
    pose = twist_pose(hand, b["hand_pose"], degrees, shape=b["hand_shape"])
    coarse = dict(hand_pose=pose, hand_shape=b["hand_shape"], hand_trans=b["hand_trans"])
    f, t_vc = _field(hand, b, field, picr, coarse, truth["truth_objects"])
    return Starts(pose, b["hand_shape"], b["hand_trans"], truth["truth_objects"], f, t_vc, **truth,
                  name="twisted thumb")  # fmt: skip


def pose_abnormality(hand: HandModel, pose: torch.Tensor, shape: torch.Tensor | None = None) -> dict:
    """How far B poses are from an anatomical hand (Fig. 7's measures).

    Returns:
        ``"L_anat"`` (B,) radians (:func:`miho.amano.anatomical_loss`); ``"worst violation"`` (B,)
        degrees, the largest distance of any joint's angle component to its interval;
        ``"finger twist"`` (B, 5) degrees, for each finger (:data:`miho.hand.FINGERS` order) the
        sum of its three joints' absolute twist angles.
    """
    rest = amano.rest_frames(hand, shape)
    over = amano.limit_violations(pose, rest)
    twist = amano.angles(pose, rest)[..., 0].abs()
    per_finger = torch.stack([twist[:, [j - 1 for j in FINGER_JOINTS[f]]].sum(1) for f in FINGERS], 1)
    return {"L_anat": over.sum((1, 2)), "worst violation": torch.rad2deg(over.amax((1, 2))),
            "finger twist": torch.rad2deg(per_finger)}  # fmt: skip


#: Fig. 7's and Fig. 15's settings: GeO with and without L_anat
ANATOMY = {"with L_anat": {}, "without L_anat": {"w_anat": 0.0}}


def pose_space_settings(pca: PosePCA) -> dict[str, dict]:
    """Table 6's settings: GeO on the 15 joint rotations (with L_anat) and on the coefficients of
    the PCA pose space ``pca`` (HoNet's: the training grasps' basis, ``honet.pose_pca``)."""
    return {"full pose": {}, "PCA pose": {"pose_pca": pca}}


@dataclass
class Ablation:
    """Metrics of the ground truth, the start and each GeO setting (each a
    :class:`miho.metrics.MetricTable`), each setting's GeO time per iteration (ms, whole batch),
    and each setting's :class:`miho.geo.GeOResult` (on the CPU; empty where not kept)."""

    truth: metrics.MetricTable
    start: metrics.MetricTable
    runs: dict[str, metrics.MetricTable]
    ms_per_iteration: dict[str, float]
    results: dict = dataclasses.field(default_factory=dict)
    start_name: str = "start"

    def rows(self, columns=("HE", "OE", "PD", "SIV", "DD")) -> list[tuple]:
        """(setting, means of ``columns``..., ms per iteration per sample) for a table; the
        ground truth and the start first (no time)."""
        B = len(self.start)
        out = [(name, *(t.mean()[c] for c in columns), None) for name, t in
               (("ground truth", self.truth), (self.start_name, self.start))]  # fmt: skip
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
        """:func:`refinement_stats` of every setting (from the start), by setting."""
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
    batch: "dict | Starts",
    settings: dict[str, dict] | None = None,
    iterations: int = 400,
    resolution: int = 80,
    progress: bool = False,
    keep_results: bool = False,
) -> Ablation:
    """GeO in the hand-object mode from the same starts under each setting (default
    :data:`ABLATIONS`), scored against the truth (HE, OE, PD, SIV, DD).

    Args:
        hand: the hand model of the batch.
        batch: :class:`Starts` (:func:`honet_starts`, :func:`disturbed_starts`, ...), or a batch
            for :func:`disturbed_starts` with the ground-truth field (the fitting stage alone: what
            each contact term and the repulsive springs do to the same starts).
        settings: name -> :class:`miho.geo.GeOConfig` overrides.
        iterations, resolution: GeO iterations; SIV voxels per axis.
        keep_results: keep each setting's :class:`miho.geo.GeOResult` (``Ablation.results``).
    """
    starts = batch if isinstance(batch, Starts) else disturbed_starts(hand, batch)
    settings = ABLATIONS if settings is None else settings
    spec = {name: (starts, o) for name, o in settings.items()}
    return _refine_and_score(hand, spec, iterations, resolution, progress, keep_results)


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
    starts = disturbed_starts(hand, batch)
    spec = {}
    for name, f in fields.items():
        f, options = (f, overrides) if isinstance(f, cpf.CPF) else (f[0], {**overrides, **f[1]})
        f = cpf.CPF(f.vc.to(hand.device, hand.dtype), f.cr.to(hand.device), f.ae.to(hand.device, hand.dtype))
        spec[name] = (starts.replace(field=f), options)
    return _refine_and_score(hand, spec, iterations, resolution, progress, False)


def _refine_and_score(hand: HandModel, spec: dict, iterations: int, resolution: int, progress: bool,
                      keep: bool) -> Ablation:  # fmt: skip
    """GeO from each ``spec`` entry name -> (Starts, GeOConfig overrides); every entry shares the
    first one's truth and start (the start's metrics are the first entry's)."""
    first = next(iter(spec.values()))[0]

    def score(hand_verts, objects):
        return metrics.evaluate(hand_verts, objects, hand=hand, gt_hand_verts=first.truth_hand,
                                gt_obj_verts=first.truth_objects.verts, resolution=resolution)  # fmt: skip

    with torch.no_grad():
        start_hand = hand(first.pose, first.shape, first.trans).vertices
    runs, times, results = {}, {}, {}
    for name, (st, overrides) in spec.items():
        t0 = time.perf_counter()
        res = geo.optimize(hand, st.pose, st.objects, st.field, trans=st.trans, shape=st.shape, iterations=iterations,
                           progress=progress, **{"mode": "hand-object", "t_vc": st.t_vc, **overrides})  # fmt: skip
        if hand.device.type == "cuda":
            torch.cuda.synchronize()
        times[name] = (time.perf_counter() - t0) / max(iterations, 1) * 1e3
        runs[name] = score(res.hand_verts, st.objects.with_verts(res.obj_verts))
        if keep:
            kept = ("pose", "trans", "shape", "hand_verts", "obj_verts")
            results[name] = dataclasses.replace(res, **{k: getattr(res, k).cpu() for k in kept})
    return Ablation(score(first.truth_hand, first.truth_objects), score(start_hand, first.objects), runs, times,
                    results, first.name)  # fmt: skip


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
