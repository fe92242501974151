"""Per-object-vertex features of the coarse hand: what the hand-aware PiCR reads beside the image
(an addition beyond the paper: its PiCR sees the image and the coarse object only, Eq. 8).

For every object vertex v (normal n_v), with the coarse hand's vertices h (normals n_h), its
palm-side vertices (:attr:`miho.anchors.HandRegions.palm_side`) and its 32 anchors a
(:mod:`miho.anchors`), all in the camera frame, metres; ``s`` = 20 mm (:data:`miho.cpf.S`):

====  =============================================================================================
col   feature
====  =============================================================================================
0     signed distance to the nearest hand vertex h*, over ``s``, clipped to [-4, 4]: |v - h*|
      with the sign of (v - h*) . n_h* (negative: v lies behind the hand's surface, inside it)
1     distance to the nearest palm-side hand vertex over ``s``, clipped to [0, 4] (Eq. 4's
      contact test is this below 1)
2-18  one-hot of the region of the nearest anchor (17 regions)
19    Eq. 4's elasticity of the nearest anchor's distance d_a: 0.5 cos(pi d_a / s) + 0.5 for
      d_a < s, else 0
20    n_v . n_h*: -1 where the two surfaces face each other, as touching surfaces do
====  =============================================================================================

Padded object vertices get zeros. Clipping keeps far vertices (a hand 10 cm away) from
dominating the network's input: past 4 s = 80 mm every vertex looks the same, "far".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from miho.anchors import NUM_REGIONS, HandRegions, hand_regions
from miho.checks import check_device, check_index, check_mask, check_tensor
from miho.cpf import S, elasticity
from miho.geometry import knn
from miho.mesh import vertex_normals

__all__ = ["HAND_FEATURES", "CoarseHand", "hand_features"]

#: feature columns a vertex (see the module docstring)
HAND_FEATURES = 2 + NUM_REGIONS + 2

CLIP = 4.0  #: distances are clipped to this many ``s``


def hand_features(
    hand_verts: torch.Tensor,
    hand_faces: torch.Tensor,
    regions: HandRegions,
    obj_verts: torch.Tensor,
    obj_normals: torch.Tensor,
    obj_mask: torch.Tensor | None = None,
    s: float = S,
) -> torch.Tensor:
    """The coarse hand's features at every object vertex (module docstring).

    Args:
        hand_verts: (B, V, 3) coarse hand, camera frame, metres. hand_faces: (F, 3) long, the hand
            model's triangles. regions: the hand's :class:`~miho.anchors.HandRegions`.
        obj_verts: (B, N, 3) coarse object, same frame. obj_normals: (B, N, 3) unit outward
            normals. obj_mask: (B, N) bool, real vertices (default all). s: distance scale, metres.

    Returns:
        (B, N, :data:`HAND_FEATURES`) in the object vertices' dtype, without gradient.
    """
    V = regions.labels.shape[0]
    check_tensor("hand_verts", hand_verts, (None, V, 3))
    B = hand_verts.shape[0]
    check_index("hand_faces", hand_faces, (None, 3), V)
    check_tensor("obj_verts", obj_verts, (B, None, 3))
    check_tensor("obj_normals", obj_normals, tuple(obj_verts.shape))
    if obj_mask is None:
        obj_mask = torch.ones(obj_verts.shape[:2], dtype=torch.bool, device=obj_verts.device)
    check_mask("obj_mask", obj_mask, tuple(obj_verts.shape[:2]))
    for name, t in (("hand_faces", hand_faces), ("obj_verts", obj_verts), ("obj_normals", obj_normals),
                    ("obj_mask", obj_mask), ("the hand regions", regions.labels)):  # fmt: skip
        check_device(name, t, hand_verts.device, "hand_verts")
    if not s > 0:
        raise ValueError(f"s must be positive, got {s!r}")
    with torch.no_grad():
        # distances about the hand's centre: cdist's float32 |a|^2 + |b|^2 - 2 a.b loses tens of
        # micrometres at camera distances (0.5 m) that it keeps near the origin
        centre = hand_verts.mean(1, keepdim=True)
        hv, ov = (hand_verts - centre).float(), (obj_verts - centre).float()
        hn = vertex_normals(hv, hand_faces.expand(B, -1, -1))
        dist, idx = knn(ov, hv, 1)
        near = (ov - hv.gather(1, idx.expand(-1, -1, 3))) * hn.gather(1, idx.expand(-1, -1, 3))
        signed = torch.where(near.sum(-1) < 0, -dist[..., 0], dist[..., 0])
        palm = regions.palm_side.nonzero()[:, 0]
        d_palm = knn(ov, hv[:, palm], 1)[0][..., 0]
        d_anchor, nearest = torch.cdist(ov, regions.anchors(hv)).min(-1)
        facing = (obj_normals.float() * hn.gather(1, idx.expand(-1, -1, 3))).sum(-1)
        out = torch.cat([
            (signed / s).clamp(-CLIP, CLIP)[..., None], (d_palm / s).clamp(0, CLIP)[..., None],
            F.one_hot(regions.anchor_region[nearest], NUM_REGIONS).float(),
            elasticity(d_anchor, s)[..., None], facing[..., None],
        ], -1)  # fmt: skip
        return (out * obj_mask[..., None]).to(obj_verts.dtype)


class CoarseHand:
    """The hand model and its regions, turning coarse hand parameters into :func:`hand_features`
    (what the hand-aware PiCR's training, evaluation and pipeline call). Moves itself to the
    device of the parameters it is given.

    Args:
        hand: a :class:`miho.hand.HandModel` (default :func:`miho.hand.load_hand`).
    """

    def __init__(self, hand=None) -> None:
        from miho.hand import load_hand

        self.hand = hand if hand is not None else load_hand()
        self.regions = hand_regions(self.hand)

    def features(self, pose: torch.Tensor, shape: torch.Tensor, trans: torch.Tensor, obj_verts: torch.Tensor,
                 obj_normals: torch.Tensor, obj_mask: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """(B, 16, 3) axis-angle pose, (B, n_shape) shape, (B, 3) translation of the coarse hand (camera
        frame) and the object as in :func:`hand_features` -> (B, N, :data:`HAND_FEATURES`)."""
        if self.hand.device != pose.device:
            self.hand = self.hand.to(pose.device)
            self.regions = hand_regions(self.hand)
        with torch.no_grad():
            verts = self.hand(pose.to(self.hand.dtype), shape.to(self.hand.dtype), trans.to(self.hand.dtype)).vertices
        return hand_features(verts, self.hand.faces, self.regions, obj_verts, obj_normals, obj_mask)
