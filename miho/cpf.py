"""The Contact Potential Field (paper §4, Algorithm 1, Eq. 1-4, Supp B).

A CPF lives on the object's vertices. For object vertex ``j``:

* ``vc[j]`` (Vertex Contact): the probability that it touches the hand;
* ``cr[j]`` (Contact Region): the hand subregion (0-16, :mod:`miho.anchors`) it touches;
* ``ae[j]`` (Anchor Elasticity): the stiffness ``k_atr`` of the springs from it to the anchors
  of that subregion, in [0, 1].

Energies (Algorithm 1), per sample, distances in metres:

* attraction (Eq. 1 with anchors): ``0.5 * ae[j] * |a_i - v_j|^2`` for every object vertex with
  ``vc[j] > t_vc`` and every anchor ``a_i`` of subregion ``cr[j]``;
* repulsion (Eq. 2): ``0.5 * k_rpl * exp(-(h_i - v_j) . n_j / scale)^2`` for every hand vertex
  ``h_i`` within ``t_rpl`` of ``v_j`` (``n_j`` the object normal). The paper's ``scale`` is 1 (in
  the package's unit, metres): over the 20 mm range ``exp(-x)`` is then nearly ``1 - x``, so the
  repulsion is a gentle, almost constant push out of the object on every nearby hand vertex,
  a little stronger the deeper the vertex is.

Ground truth (Eq. 4, Supp B.2): :func:`annotate` marks an object vertex in contact when one of
its ``k`` nearest palm-side hand vertices is closer than ``s = 20 mm``; its region is the mode
of those vertices' regions weighted by ``s - d``; its elasticity is
``0.5 cos(pi d / s) + 0.5`` for the distance ``d`` to the nearest anchor of that region (0 at
``d >= s``: no spring).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from miho.anchors import NUM_REGIONS, HandRegions
from miho.checks import check_tensor

T_VC = 0.8  # vertex-contact threshold of Algorithm 1
K_RPL = 1e-3  # repulsive spring elasticity (paper)
T_RPL = 0.02  # repulsion range, metres
S = 0.02  # elasticity scale of Eq. 4, metres


@dataclass
class CPF:
    """A contact potential field on B objects of N (padded) vertices.

    vc: (B, N) contact probability in [0, 1]. cr: (B, N) long subregion id (-1: none).
    ae: (B, N) attractive elasticity in [0, 1].
    """

    vc: torch.Tensor
    cr: torch.Tensor
    ae: torch.Tensor

    def __post_init__(self) -> None:
        if self.cr.dim() == 3:  # per-region probabilities (B, N, 17) -> ids
            if self.cr.shape[-1] != NUM_REGIONS:
                raise ValueError(f"cr probabilities must have shape (B, N, {NUM_REGIONS}), got {tuple(self.cr.shape)}")
            self.cr = self.cr.argmax(-1)
        check_tensor("vc", self.vc, (None, None))
        check_tensor("ae", self.ae, tuple(self.vc.shape))
        if self.cr.shape != self.vc.shape:
            raise ValueError(f"cr must have shape {tuple(self.vc.shape)}, got {tuple(self.cr.shape)}")

    def contact(self, t_vc: float = T_VC, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N) bool: vertices whose contact probability exceeds ``t_vc`` (and are real)."""
        c = (self.vc > t_vc) & (self.cr >= 0)
        return c if mask is None else c & mask

    def __getitem__(self, idx) -> "CPF":
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)
        return CPF(self.vc[idx], self.cr[idx], self.ae[idx])


def elasticity(d: torch.Tensor, s: float = S) -> torch.Tensor:
    """Eq. 4: ``0.5 cos(pi d / s) + 0.5`` for ``d < s``, else 0 (d, s in metres)."""
    return torch.where(d < s, 0.5 * torch.cos(math.pi * d / s) + 0.5, torch.zeros_like(d))


def attraction_energy(
    anchors: torch.Tensor,
    obj_verts: torch.Tensor,
    cpf: CPF,
    anchor_region: torch.Tensor,
    obj_mask: torch.Tensor | None = None,
    t_vc: float = T_VC,
    anchor_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attractive springs of Algorithm 1 (lines 2-6). Returns (B,) energies.

    Args:
        anchors: (B, A, 3). obj_verts: (B, N, 3). cpf: the field on those vertices.
        anchor_region: (A,) subregion of each anchor. obj_mask: (B, N) real vertices.
        anchor_weight: (A,) optional extra weight per anchor (the official code weights
            fingertip anchors 1.0 and the others 0.1).
    """
    active = cpf.contact(t_vc, obj_mask)  # (B, N)
    pair = active[..., None] & (cpf.cr[..., None] == anchor_region)  # (B, N, A)
    k = cpf.ae[..., None] * pair
    if anchor_weight is not None:
        k = k * anchor_weight
    d2 = (obj_verts[:, :, None] - anchors[:, None]).square().sum(-1)
    return 0.5 * (k * d2).sum((1, 2))


def nearest_hand_vertices(
    hand_verts: torch.Tensor, obj_verts: torch.Tensor, k: int, chunk: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (B, N, k) of the k nearest hand vertices of every object vertex, and their
    distances (B, N, k), computed without gradient in batch chunks."""
    idx, dist = [], []
    with torch.no_grad():
        for b in range(0, obj_verts.shape[0], chunk):
            d = torch.cdist(obj_verts[b : b + chunk], hand_verts[b : b + chunk])
            dk, ik = d.topk(min(k, d.shape[-1]), dim=-1, largest=False)
            idx.append(ik)
            dist.append(dk)
    return torch.cat(idx), torch.cat(dist)


def repulsion_energy(
    hand_verts: torch.Tensor,
    obj_verts: torch.Tensor,
    obj_normals: torch.Tensor,
    obj_mask: torch.Tensor | None = None,
    k_rpl: float = K_RPL,
    t_rpl: float = T_RPL,
    neighbours: int | None = None,
    scale: float = 1.0,
    neighbour_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Repulsive springs of Algorithm 1 (lines 7-8). Returns (B,) energies.

    Args:
        hand_verts: (B, V, 3). obj_verts, obj_normals: (B, N, 3) (unit outward normals).
        neighbours: consider only this many nearest hand vertices per object vertex (the
            official code uses 50; ``None``: all of them, exact but O(N V) memory).
        scale: length scale of the exponential, metres (paper: 1).
        neighbour_index: (B, N, K) precomputed :func:`nearest_hand_vertices` indices to use
            instead of searching again (an optimiser may refresh them every few steps).
    """
    if neighbours is None and neighbour_index is None:
        off = hand_verts[:, None] - obj_verts[:, :, None]  # (B, N, V, 3)
    else:
        idx = neighbour_index if neighbour_index is not None else nearest_hand_vertices(
            hand_verts, obj_verts, neighbours)[0]  # fmt: skip
        B, N, K = idx.shape
        near = torch.gather(hand_verts, 1, idx.reshape(B, N * K, 1).expand(-1, -1, 3)).reshape(B, N, K, 3)
        off = near - obj_verts[:, :, None]
    close = off.square().sum(-1) <= t_rpl**2
    if obj_mask is not None:
        close = close & obj_mask[..., None]
    proj = (off * obj_normals[:, :, None]).sum(-1)
    e = 0.5 * k_rpl * torch.exp(-2.0 * proj / scale)
    return (e * close).sum((1, 2))


def elastic_energy(
    hand_verts: torch.Tensor,
    anchors: torch.Tensor,
    obj_verts: torch.Tensor,
    obj_normals: torch.Tensor,
    cpf: CPF,
    anchor_region: torch.Tensor,
    obj_mask: torch.Tensor | None = None,
    t_vc: float = T_VC,
    k_rpl: float = K_RPL,
    t_rpl: float = T_RPL,
    neighbours: int | None = None,
) -> torch.Tensor:
    """E_elast of Algorithm 1: attraction + repulsion, (B,)."""
    return attraction_energy(anchors, obj_verts, cpf, anchor_region, obj_mask, t_vc) + repulsion_energy(
        hand_verts, obj_verts, obj_normals, obj_mask, k_rpl, t_rpl, neighbours
    )


def annotate(
    hand_verts: torch.Tensor,
    obj_verts: torch.Tensor,
    regions: HandRegions,
    obj_mask: torch.Tensor | None = None,
    s: float = S,
    k: int = 32,
) -> CPF:
    """Ground-truth CPF of posed hand-object pairs (Eq. 4, Supp B.2).

    Args:
        hand_verts: (B, V, 3) posed hand. obj_verts: (B, N, 3) posed object, metres.
        regions: the hand's subregions and anchors. obj_mask: (B, N) real vertices.
        s: contact distance and elasticity scale (20 mm). k: palm-side neighbours per vertex.

    Returns:
        :class:`CPF` with vc in {0, 1}, cr the weighted-mode region (-1 off contact) and ae.
    """
    check_tensor("hand_verts", hand_verts, (None, None, 3))
    check_tensor("obj_verts", obj_verts, (hand_verts.shape[0], None, 3))
    palm = regions.palm_side.nonzero()[:, 0]
    idx, dist = nearest_hand_vertices(hand_verts[:, palm], obj_verts, k)
    close = dist < s
    vc = close.any(-1)
    if obj_mask is not None:
        vc = vc & obj_mask
    votes = torch.zeros(*vc.shape, NUM_REGIONS, dtype=dist.dtype, device=dist.device)
    votes.scatter_add_(-1, regions.labels[palm][idx], (s - dist) * close)
    cr = torch.where(vc, votes.argmax(-1), torch.full_like(vc, -1, dtype=torch.long))
    anchors = regions.anchors(hand_verts)  # (B, A, 3)
    d = torch.cdist(obj_verts, anchors)  # (B, N, A)
    same = cr[..., None] == regions.anchor_region
    d_region = torch.where(same, d, torch.full_like(d, math.inf)).min(-1).values
    ae = torch.where(vc, elasticity(d_region, s), torch.zeros_like(d_region))
    return CPF(vc=vc.to(dist.dtype), cr=cr, ae=ae)
