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

Inputs. A :class:`CPF` checks its values when it is made (ranges, region ids 0-16). The energies
and :func:`nearest_hand_vertices` run in every iteration of GeO: they check shapes, dtypes and
devices, and look for NaN on a CPU only (no device sync, see :mod:`miho.checks`); NaN on an
accelerator gives a NaN energy. :func:`annotate`, called once per pair, checks everything.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

from miho.anchors import NUM_REGIONS, HandRegions
from miho.checks import check_device, check_index, check_integer, check_mask, check_tensor
from miho.geometry import knn

T_VC = 0.8  # vertex-contact threshold of Algorithm 1
K_RPL = 1e-3  # repulsive spring elasticity (paper)
T_RPL = 0.02  # repulsion range, metres
S = 0.02  # elasticity scale of Eq. 4, metres


@dataclass
class CPF:
    """A contact potential field on B objects of N (padded) vertices.

    vc: (B, N) contact probability in [0, 1]. cr: (B, N) integer subregion id in 0-16 (-1: none),
    or (B, N, 17) per-region scores (turned into ids by argmax). ae: (B, N) attractive
    elasticity in [0, 1]. All on one device.

    Raises:
        ValueError: wrong shapes or dtypes, NaN/inf, values out of those ranges, several devices.
    """

    vc: torch.Tensor
    cr: torch.Tensor
    ae: torch.Tensor

    def __post_init__(self) -> None:
        check_tensor("vc", self.vc, (None, None))
        if isinstance(self.cr, torch.Tensor) and self.cr.dim() == 3:  # per-region scores -> ids
            if self.cr.shape[-1] != NUM_REGIONS:
                raise ValueError(f"cr probabilities must have shape (B, N, {NUM_REGIONS}), got {tuple(self.cr.shape)}")
            check_tensor("cr", self.cr)
            self.cr = self.cr.argmax(-1)
        check_integer("cr", self.cr, tuple(self.vc.shape))
        check_tensor("ae", self.ae, tuple(self.vc.shape))
        for name in ("cr", "ae"):
            check_device(name, getattr(self, name), self.vc.device, "vc")
        if self.vc.numel() and self.vc.device.type != "meta":
            bounds = {"vc": (0, 1), "cr": (-1, NUM_REGIONS - 1), "ae": (0, 1)}
            found = torch.stack([m.float() for k in bounds for m in getattr(self, k).aminmax()]).tolist()  # one sync
            for (name, (lo, hi)), a, b in zip(bounds.items(), found[::2], found[1::2]):
                if a < lo or b > hi:
                    raise ValueError(f"{name} must lie in [{lo}, {hi}], found values in [{a:g}, {b:g}]")

    def contact(self, t_vc: float = T_VC, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N) bool: vertices whose contact probability exceeds ``t_vc`` (and, with a (B, N)
        bool ``mask``, are real)."""
        c = (self.vc > t_vc) & (self.cr >= 0)
        if mask is None:
            return c
        check_mask("mask", mask, tuple(c.shape))
        check_device("mask", mask, c.device, "the field")
        return c & mask

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
        anchors: (B, A, 3) metres. obj_verts: (B, N, 3) metres. cpf: the field on those vertices.
        anchor_region: (A,) integer subregion of each anchor. obj_mask: (B, N) bool, real vertices.
        anchor_weight: (A,) optional extra weight per anchor (the official code weights
            fingertip anchors 1.0 and the others 0.1).
    """
    check_tensor("anchors", anchors, (None, None, 3), finite="cpu")
    (B, A), dev = anchors.shape[:2], anchors.device
    check_tensor("obj_verts", obj_verts, (B, None, 3), finite="cpu")
    check_tensor("cpf.vc", cpf.vc, (B, obj_verts.shape[1]), finite=False)  # values checked by CPF
    check_integer("anchor_region", anchor_region, (A,))
    _check_mask(obj_mask, (B, obj_verts.shape[1]), dev, "anchors")
    if anchor_weight is not None:
        check_tensor("anchor_weight", anchor_weight, (A,), finite="cpu")
    for name, t in (("obj_verts", obj_verts), ("cpf.vc", cpf.vc), ("anchor_region", anchor_region),
                    ("anchor_weight", anchor_weight)):  # fmt: skip
        if t is not None:
            check_device(name, t, dev, "anchors")
    active = cpf.contact(t_vc, obj_mask)  # (B, N)
    pair = active[..., None] & (cpf.cr[..., None] == anchor_region)  # (B, N, A)
    k = cpf.ae[..., None] * pair
    if anchor_weight is not None:
        k = k * anchor_weight
    d2 = (obj_verts[:, :, None] - anchors[:, None]).square().sum(-1)
    return 0.5 * (k * d2).sum((1, 2))


def _check_mask(obj_mask: torch.Tensor | None, shape: tuple, device: torch.device, what: str) -> None:
    """An optional (B, N) bool mask of the real object vertices, on the device of ``what``."""
    if obj_mask is not None:
        check_mask("obj_mask", obj_mask, shape)
        check_device("obj_mask", obj_mask, device, what)


def _check_count(name: str, value) -> None:
    if not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def nearest_hand_vertices(
    hand_verts: torch.Tensor, obj_verts: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (B, N, K) of the K = min(k, V) nearest of the (B, V, 3) hand vertices of every
    (B, N, 3) object vertex, and their distances (B, N, K) in metres (in the hand's dtype),
    computed without gradient (:func:`miho.geometry.knn`)."""
    check_tensor("hand_verts", hand_verts, (None, None, 3), finite="cpu")
    (B, V), dev = hand_verts.shape[:2], hand_verts.device
    check_tensor("obj_verts", obj_verts, (B, None, 3), finite="cpu")
    check_device("obj_verts", obj_verts, dev, "hand_verts")
    _check_count("k", k)
    if V == 0:
        raise ValueError("hand_verts holds no vertex")
    dist, idx = knn(obj_verts.to(hand_verts.dtype), hand_verts, min(k, V))
    return idx, dist


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
        hand_verts: (B, V, 3) metres. obj_verts, obj_normals: (B, N, 3) (unit outward normals).
        obj_mask: (B, N) bool, real vertices.
        k_rpl: spring elasticity. t_rpl: range, metres.
        neighbours: consider only this many nearest hand vertices per object vertex (the
            official code uses 50; ``None``: all of them, exact but O(N V) memory).
        scale: length scale of the exponential, metres (paper: 1).
        neighbour_index: (B, N, K) precomputed :func:`nearest_hand_vertices` indices to use
            instead of searching again (an optimiser may refresh them every few steps).
    """
    check_tensor("hand_verts", hand_verts, (None, None, 3), finite="cpu")
    (B, V), dev = hand_verts.shape[:2], hand_verts.device
    check_tensor("obj_verts", obj_verts, (B, None, 3), finite="cpu")
    N = obj_verts.shape[1]
    check_tensor("obj_normals", obj_normals, (B, N, 3), finite="cpu")
    _check_mask(obj_mask, (B, N), dev, "hand_verts")
    if neighbour_index is not None:
        check_index("neighbour_index", neighbour_index, (B, N, None), V, read="cpu", what="hand vertices")
    elif neighbours is not None:
        _check_count("neighbours", neighbours)
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale!r}")
    for name, t in (("obj_verts", obj_verts), ("obj_normals", obj_normals), ("neighbour_index", neighbour_index)):
        if t is not None:
            check_device(name, t, dev, "hand_verts")
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
    e = 0.5 * k_rpl * torch.exp(-2.0 * proj / scale)  # inf far behind a surface: masked out below
    return torch.where(close, e, torch.zeros_like(e)).sum((1, 2))


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
        hand_verts: (B, V, 3) posed hand (V: that of ``regions``' hand). obj_verts: (B, N, 3)
            posed object, metres (computed in the wider of their dtypes, float32 at least).
        regions: the hand's subregions and anchors, on the hand's device. obj_mask: (B, N) bool,
            real vertices.
        s: contact distance and elasticity scale (20 mm). k: palm-side neighbours per vertex.

    Returns:
        :class:`CPF` with vc in {0, 1}, cr the weighted-mode region (-1 off contact) and ae.
    """
    check_tensor("hand_verts", hand_verts, (None, regions.labels.shape[0], 3))
    check_device("hand_verts", hand_verts, regions.labels.device, "the hand regions")
    B = hand_verts.shape[0]
    check_tensor("obj_verts", obj_verts, (B, None, 3))
    check_device("obj_verts", obj_verts, hand_verts.device, "hand_verts")
    _check_mask(obj_mask, (B, obj_verts.shape[1]), hand_verts.device, "hand_verts")
    if not s > 0:
        raise ValueError(f"s must be positive, got {s!r}")
    _check_count("k", k)
    # One dtype for both, float32 at least (half precision has no CPU distance kernels).
    dtype = torch.promote_types(torch.promote_types(hand_verts.dtype, obj_verts.dtype), torch.float32)
    hand_verts, obj_verts = hand_verts.to(dtype), obj_verts.to(dtype)
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
