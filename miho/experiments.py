"""Experiments shared by the book, the tests and the benchmarks: perturb ground-truth grasps the
way a coarse estimate would be wrong, refine them with GeO, and score before and after."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from miho import cpf, geo, metrics
from miho.anchors import hand_regions
from miho.hand.model import HandModel, _check
from miho.mesh import Meshes


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
    _check("pose", pose, (None, 16, 3))
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
