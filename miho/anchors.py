"""Hand subregions and anchors, computed by the paper's algorithm for any hand (Supp A.2-A.3).

Subregions (17). Region ``r < 15`` is the bone that starts at MANO joint ``r + 1``: 0-2 index
proximal/middle/distal phalanx, 3-5 middle, 6-8 little, 9-11 ring, 12-14 thumb; 15 is the palm
(metacarpals) and 16 the carpal region. The fingertip regions are 2, 5, 8, 11 and 14.

Control points (24), on the rest hand's links (joint to child):

* ids 0-14: the midpoint of each phalanx link (control point ``r`` lies in region ``r``);
* ids 15-18: the upper third (towards the knuckle) of the wrist -> MCP link of the index,
  middle, little and ring fingers: palm;
* ids 19-22: the lower third of the same links, and id 23: the midpoint of the wrist -> thumb
  link: carpal.

Every vertex takes the region of its nearest control point. A vertex is *palm-side* when it lies
on the palm's side of its region's link axis (its offset from the axis has a positive component
along the region's palmar direction, minus the splay axis of the link's A-MANO frame; minus
"up" for the palm and carpal regions).

Anchors (32). A ray from a control point along its region's palmar direction hits the palm
surface; the hit is the anchor. For a fingertip, a cone with the control point as apex, the hit
as base centre and, as base radius, the largest distance of the region's vertices to the control
point gives three generatrices at 0, 120 and 240 degrees (the first towards the fingertip); their
hits are the region's three anchors. The carpal region uses three of its five control points
(ids 20, 21, 23: middle, little and thumb, spread across the wrist); the palm uses all four.
Each anchor is stored as a triangle and two weights, ``a = v0 + w1 (v1 - v0) + w2 (v2 - v0)``,
so anchors are a linear, differentiable function of the vertices: 15 at the fingertips, 10 on
the other phalanges, 4 on the palm, 3 on the carpal region.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass

import torch

from miho import amano
from miho.checks import check_device, check_faces, check_tensor
from miho.geometry import ray_triangle_hits
from miho.hand.model import FINGER_JOINTS, JOINTS21_ORDER, HandModel

NUM_REGIONS = 17
PALM, CARPAL = 15, 16
TIP_REGIONS = (2, 5, 8, 11, 14)
REGION_NAMES = tuple(
    f"{f}_{p}" for f in ("index", "middle", "little", "ring", "thumb") for p in ("proximal", "middle", "distal")
) + ("palm", "carpal")
#: Control points that carry anchors (all but carpal 19 and 22).
ANCHOR_CONTROL_POINTS = tuple(range(19)) + (20, 21, 23)
_FOUR = ("index", "middle", "little", "ring")


@dataclass
class HandRegions:
    """Subregions and anchors of one hand topology (tensors on the hand's device).

    control_points: (24, 3) on the rest hand at zero shape, metres.
    control_region: (24,) region of each control point.
    labels: (V,) region of each vertex.
    palm_side: (V,) bool, vertices that may carry contact (no anchors on the back of the hand).
    anchor_faces: (32, 3) vertex ids of each anchor's triangle.
    anchor_weights: (32, 2) the weights (w1, w2).
    anchor_region: (32,) region of each anchor.
    anchor_control_point: (32,) control point each anchor was cast from.

    The fingertip regions are :data:`TIP_REGIONS`: :attr:`tip_mask` and :attr:`tip_anchor` select
    their vertices and anchors.
    """

    control_points: torch.Tensor
    control_region: torch.Tensor
    labels: torch.Tensor
    palm_side: torch.Tensor
    anchor_faces: torch.Tensor
    anchor_weights: torch.Tensor
    anchor_region: torch.Tensor
    anchor_control_point: torch.Tensor

    @property
    def tip_mask(self) -> torch.Tensor:
        """(V,) bool: the vertices of the fingertip regions."""
        return torch.isin(self.labels, torch.tensor(TIP_REGIONS, device=self.labels.device))

    @property
    def tip_anchor(self) -> torch.Tensor:
        """(32,) bool: the anchors of the fingertip regions (15 of them)."""
        return torch.isin(self.anchor_region, torch.tensor(TIP_REGIONS, device=self.anchor_region.device))

    def anchors(self, vertices: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) hand vertices (metres) of the hand these regions belong to -> (B, 32, 3)
        anchor positions (linear in the vertices).

        Called in every iteration of an optimiser: NaN is looked for on a CPU only (no device sync).
        """
        check_tensor("vertices", vertices, (None, self.labels.shape[0], 3), finite="cpu")
        check_device("vertices", vertices, self.labels.device, "the hand regions")
        return _interpolate(vertices, self.anchor_faces, self.anchor_weights)


def anchor_positions(vertices: torch.Tensor, faces: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(B, V, 3) vertices, (A, 3) triangles, (A, 2) weights -> (B, A, 3) anchors, each
    ``v0 + w1 (v1 - v0) + w2 (v2 - v0)`` of its triangle (v0, v1, v2)."""
    check_tensor("vertices", vertices, (None, None, 3))
    check_faces("faces", faces, vertices.shape[1], allow_empty=True)
    check_tensor("weights", weights, (faces.shape[0], 2))
    for name, t in (("faces", faces), ("weights", weights)):
        check_device(name, t, vertices.device, "vertices")
    return _interpolate(vertices, faces, weights)


def _interpolate(vertices: torch.Tensor, faces: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    v0, v1, v2 = (vertices[:, faces[:, k]] for k in range(3))
    w1, w2 = weights[:, 0, None], weights[:, 1, None]
    return v0 + w1 * (v1 - v0) + w2 * (v2 - v0)


def control_points(joints21: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 24 control points of a (21, 3) joint set, their regions (24,) and their links.

    Returns:
        points (24, 3), region (24,) long, link (24, 2, 3): the link (start, end) each lies on.
    """
    j21 = dict(zip(JOINTS21_ORDER, joints21))  # MANO joint id (tips 16-20) -> position
    links, fracs, regions = [], [], []
    for r in range(15):
        j = r + 1
        links.append((j21[j], j21[amano.CHILD[j]]))
        fracs.append(0.5)
        regions.append(r)
    for frac, region in ((2 / 3, PALM), (1 / 3, CARPAL)):
        for f in _FOUR:
            links.append((j21[0], j21[FINGER_JOINTS[f][0]]))
            fracs.append(frac)
            regions.append(region)
    links.append((j21[0], j21[FINGER_JOINTS["thumb"][0]]))
    fracs.append(0.5)
    regions.append(CARPAL)
    link = torch.stack([torch.stack(lk) for lk in links])  # (24, 2, 3)
    frac = torch.tensor(fracs, dtype=link.dtype, device=link.device)[:, None]
    points = link[:, 0] + frac * (link[:, 1] - link[:, 0])
    return points, torch.tensor(regions, device=link.device), link


_CACHE: dict[str, HandRegions] = {}


def _key(hand: HandModel) -> str:
    h = hashlib.sha1()
    for t in (hand.template, hand.faces, hand.joints, hand.weights):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def hand_regions(hand: HandModel) -> HandRegions:
    """Subregions, palm side and anchors of ``hand`` (deterministic; cached per model)."""
    if not isinstance(hand, HandModel):
        raise ValueError(f"hand must be a HandModel, got {type(hand).__name__}")
    key = _key(hand)
    if key not in _CACHE:
        _CACHE[key] = _compute(copy.deepcopy(hand).to("cpu", torch.float64))
    r = _CACHE[key]
    return HandRegions(**{
        k: v.to(hand.device, hand.dtype if v.is_floating_point() else None) for k, v in vars(r).items()
    })  # fmt: skip


def _compute(hand: HandModel) -> HandRegions:
    out = hand(hand.zero_pose())
    verts, j21 = out.vertices[0], out.joints21[0]
    frames = amano.rest_frames(hand)[0]  # (16, 3, 3), columns twist, splay, bend
    up = amano.palm_up(out.joints[0], hand.side)
    points, cp_region, link = control_points(j21)

    # Region labels: nearest control point.
    nearest_cp = torch.cdist(verts, points).argmin(1)
    labels = cp_region[nearest_cp]

    # Palmar direction of each region: minus the splay axis of its proximal joint, minus up for
    # the palm and carpal regions.
    palmar = torch.stack([-frames[r + 1][:, 1] for r in range(15)] + [-up, -up])  # (17, 3)
    # Each vertex's own link axis is that of its nearest control point (of its region, then).
    a, b = link[nearest_cp, 0], link[nearest_cp, 1]
    axis = (b - a) / (b - a).norm(dim=-1, keepdim=True)
    off = verts - a
    radial = off - (off * axis).sum(-1, keepdim=True) * axis
    palm_side = (radial * palmar[labels]).sum(-1) > 0

    # Anchors.
    faces = hand.faces
    anchor_faces, anchor_w, anchor_region, anchor_cp = [], [], [], []
    for cp in ANCHOR_CONTROL_POINTS:
        region = int(cp_region[cp])
        origin = points[cp]
        face, t, uv = ray_triangle_hits(origin[None], palmar[region][None], verts, faces)
        if int(face[0]) < 0:
            raise ValueError(f"{hand.name}: the ray from control point {cp} misses the hand surface")
        if region in TIP_REGIONS:
            base = origin + t[0] * palmar[region]
            radius = (verts[labels == region] - origin).norm(dim=-1).max()
            ax = (base - origin) / (base - origin).norm()
            distal = -frames[region + 1][:, 0]  # minus twist: towards the fingertip
            e1 = distal - (distal @ ax) * ax
            e1 = e1 / e1.norm()
            e2 = torch.linalg.cross(ax, e1)
            ang = torch.tensor([0.0, 2.0, 4.0], dtype=verts.dtype) * torch.pi / 3
            rim = base + radius * (torch.cos(ang)[:, None] * e1 + torch.sin(ang)[:, None] * e2)
            face, t, uv = ray_triangle_hits(origin.expand(3, 3), rim - origin, verts, faces)
            if bool((face < 0).any()):
                raise ValueError(f"{hand.name}: a cone ray of control point {cp} misses the hand surface")
        anchor_faces.append(faces[face])
        anchor_w.append(uv)
        anchor_region += [region] * face.shape[0]
        anchor_cp += [cp] * face.shape[0]
    return HandRegions(
        control_points=points,
        control_region=cp_region,
        labels=labels,
        palm_side=palm_side,
        anchor_faces=torch.cat(anchor_faces),
        anchor_weights=torch.cat(anchor_w),
        anchor_region=torch.tensor(anchor_region),
        anchor_control_point=torch.tensor(anchor_cp),
    )
