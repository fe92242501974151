"""Making grasps without a dataset: place an open hand against an object, then close it with GeO
in the grasp-synthesis setting of Supp C.2 (attraction of Hasson et al. + E_rpl + L_anat)."""

from __future__ import annotations

import torch

from miho import amano, geo
from miho.anchors import PALM, hand_regions
from miho.checks import check_tensor
from miho.geometry import nearest_vertex_inside, winding_number
from miho.hand.model import HandModel
from miho.mesh import Meshes
from miho.rotations import matrix_to_axis_angle


def palm_frame(hand: HandModel) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rest palm centre (3,), palmar unit normal (3,) and unit finger direction (3,), metres."""
    regions = hand_regions(hand)
    palm = (regions.labels == PALM) & regions.palm_side
    centre = hand.template[palm].mean(0)
    normal = -amano.palm_up(hand.joints[None], hand.side)[0]
    fingers = hand.joints[4] - hand.joints[0]
    fingers = fingers - (fingers @ normal) * normal
    return centre, normal, fingers / fingers.norm()


def _frame(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Rotation (3, 3) with columns (y x z, y', z), y' = y made orthogonal to z."""
    z = z / z.norm()
    y = y - (y @ z) * z
    y = y / y.norm()
    return torch.stack((torch.linalg.cross(y, z), y, z), -1)


def approach_pose(
    hand: HandModel,
    objects: Meshes,
    approach: torch.Tensor,
    roll: torch.Tensor,
    curl: float = 0.2,
    gap: float = 0.01,
    max_back: float = 0.1,
    tolerance: float = 0.002,
    finger_dir: torch.Tensor | None = None,
    shape: torch.Tensor | None = None,
    inside: str = "winding",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Open hands facing objects: the palm looks at each object's centroid from ``approach``.

    Args:
        objects: the B objects. approach: (B, 3) direction from the object to the hand.
        roll: (B,) radians about the approach direction, turning the fingers away from
            ``finger_dir`` (B, 3) when given, else from world z (x when the approach is near z).
        curl: fraction of the bend limits every joint starts with. gap: palm-surface distance.
        shape: (B, S) hand shapes (default the mean hand).
        max_back, tolerance: a hand that still intersects its object (the thumb of a hand at
            rest reaches well below the palm) is backed off along ``approach`` by the smallest
            distance in [0, ``max_back``] metres, found by bisection to ``tolerance``, after
            which no vertex is inside the object: by generalised winding number (``inside=
            "winding"``) or the cheaper nearest-vertex normal test (``"normal"``).

    Returns:
        pose (B, 16, 3) and trans (B, 3).
    """
    B = objects.batch
    check_tensor("approach", approach, (B, 3))
    centre, normal, fingers = palm_frame(hand)
    approach = approach / approach.norm(dim=-1, keepdim=True)
    m = objects.vert_mask[..., None]
    c = (objects.verts * m).sum(1) / m.sum(1)
    along = ((objects.verts - c[:, None]) * approach[:, None]).sum(-1).masked_fill(~objects.vert_mask, -1e9)
    reach = along.max(1).values
    rest = _frame(normal, fingers)  # hand axes in the rest pose
    rots = []
    for b in range(B):  # a few 3x3 frames; the heavy work below is batched
        ref = torch.tensor([0.0, 0.0, 1.0], dtype=hand.dtype, device=hand.device)
        if finger_dir is not None:
            ref = finger_dir[b].to(ref)
        elif abs(float(ref @ approach[b])) > 0.9:
            ref = torch.tensor([1.0, 0.0, 0.0], dtype=hand.dtype, device=hand.device)
        up = torch.cos(roll[b]) * ref + torch.sin(roll[b]) * torch.linalg.cross(approach[b], ref)
        rots.append(_frame(-approach[b], up) @ rest.T)
    R = torch.stack(rots)
    pose = amano.curl_pose(hand, curl).repeat(B, 1, 1)
    pose[:, 0] = matrix_to_axis_angle(R)
    target = c + approach * (reach + gap)[:, None]
    j0 = hand.joints[0]
    trans = target - ((centre - j0) @ R.transpose(-1, -2)) - j0
    tris = objects.triangles()

    if inside not in ("winding", "normal"):
        raise ValueError(f"inside must be 'winding' or 'normal', got {inside!r}")

    def hits(t):
        hv = hand(pose, shape, t).vertices
        if inside == "normal":
            return nearest_vertex_inside(hv, objects.verts, objects.normals(), objects.vert_mask)[0].any(1)
        return (winding_number(hv, tris, objects.face_mask).abs() > 0.5).any(1)

    with torch.no_grad():
        lo = torch.zeros(B, dtype=hand.dtype, device=hand.device)
        hi = torch.where(hits(trans), max_back, 0.0)
        while float((hi - lo).max()) > tolerance:
            mid = (lo + hi) / 2
            bad = hits(trans + mid[:, None] * approach)
            lo, hi = torch.where(bad, mid, lo), torch.where(bad, hi, mid)
        trans = trans + hi[:, None] * approach
    return pose, trans


def synthesize(
    hand: HandModel,
    objects: Meshes,
    pose: torch.Tensor,
    trans: torch.Tensor,
    iterations: int = 300,
    **overrides,
) -> geo.GeOResult:
    """Close hands on objects with GeO in the grasp-synthesis setting (:data:`geo.GRASP_SYNTHESIS`)."""
    return geo.optimize(hand, pose, objects, trans=trans, iterations=iterations, **{**geo.GRASP_SYNTHESIS, **overrides})


def example_objects(dtype=torch.float32, names=None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Small objects for the book and tests, centred at the origin, metres: a procedural
    cylinder (a can, axis z), pybullet_data's mug (axis z, handle towards +y, subdivided once;
    needs pybullet), a ball, a box and a narrower can. ``names`` picks some (default all)."""
    from miho.mesh import box, cylinder, icosphere, load_obj, subdivide

    def mug():
        import os

        import pybullet_data

        v, f = subdivide(*load_obj(os.path.join(pybullet_data.getDataPath(), "objects", "mug.obj"), dtype=dtype))
        return v - (v.max(0).values + v.min(0).values) / 2, f

    makers = {
        "cylinder": lambda: cylinder(0.03, 0.12, segments=40, rings=24, dtype=dtype),
        "mug": mug,
        "ball": lambda: icosphere(0.04, 4, dtype=dtype),
        "box": lambda: box((0.05, 0.05, 0.12), divisions=12, dtype=dtype),
        "can": lambda: cylinder(0.025, 0.10, segments=40, rings=20, dtype=dtype),
    }
    unknown = set(names or ()) - set(makers)
    if unknown:
        raise ValueError(f"unknown example objects {sorted(unknown)}; choose from {sorted(makers)}")
    return {n: makers[n]() for n in (names or makers)}


#: Approach direction (object -> hand) and roll of the example grasps: palm on the side of the
#: object, fingers wrapping around its z axis (the mug from the side opposite its handle).
EXAMPLE_APPROACH = {
    "cylinder": ((1.0, 0.0, 0.0), 1.5708),
    "mug": ((-1.0, 0.0, 0.0), 1.5708),
    "ball": ((0.0, 0.0, 1.0), 0.0),
    "box": ((1.0, 0.0, 0.0), 1.5708),
    "can": ((0.0, 1.0, 0.0), 1.5708),
}


def example_grasps(hand: HandModel, names=("cylinder", "mug"), iterations: int = 200):
    """Grasps synthesised by GeO around :func:`example_objects` (deterministic).

    Returns:
        objects (:class:`Meshes`), pose (B, 16, 3), trans (B, 3).
    """
    shapes = example_objects(hand.dtype, names)
    objects = Meshes.from_list([shapes[n] for n in names], device=hand.device, dtype=hand.dtype)
    direction = torch.tensor([EXAMPLE_APPROACH[n][0] for n in names], dtype=hand.dtype, device=hand.device)
    roll = torch.tensor([EXAMPLE_APPROACH[n][1] for n in names], dtype=hand.dtype, device=hand.device)
    pose, trans = approach_pose(hand, objects, direction, roll)
    res = synthesize(hand, objects, pose, trans, iterations=iterations)
    return objects, res.pose, res.trans
