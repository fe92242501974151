"""Hand-object reconstruction and grasp-quality metrics of the paper (§6.2), batched in torch.

Every metric takes a batch and returns one value per sample, on the inputs' device (an empty
batch gives an empty result):

* :func:`mpvpe` — mean per-vertex position error, mm (hand or object, HE / OE);
* :func:`penetration_depth` — PD, mm: the largest distance to the object surface of the hand
  vertices inside the object (0 when none is inside); per vertex: :func:`vertex_penetration`;
* :func:`solid_intersection_volume` — SIV, cm^3: the object voxelised as a solid on a
  ``resolution``^3 grid over its own axis-aligned bounding box, the voxels whose centres lie
  inside the closed hand counted, times the voxel volume (the voxels themselves:
  :func:`miho.voxels.intersection_voxels`);
* :func:`disjointedness` — DD, mm: the mean distance of the fingertip-region hand vertices to
  the object surface;
* simulation displacement (SD, mm) lives in :mod:`miho.simulation`; :func:`evaluate` scores a
  batch with all of them and returns a :class:`MetricTable`.

Inside tests. A point is inside a mesh when its winding number has magnitude above 1/2 (either
face orientation is accepted). For a closed mesh the winding number at a point off the surface
is an integer, equal to the signed number of surface crossings along any ray from the point; the
grid queries of SIV use that (exact, O(faces + voxels), :func:`miho.voxels.column_crossings`)
for the closed hand and, by default, for closed objects, and the generalised winding number
(:func:`miho.geometry.winding_number`, robust to holes) for objects with boundary edges. Units:
inputs in metres.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from miho.checks import check_device, check_faces, check_mask, check_points, check_tensor
from miho.geometry import point_triangle_distance, winding_number
from miho.mesh import Meshes, check_meshes
from miho.tables import markdown_table
from miho.voxels import VoxelCache, intersection_voxels

#: Metres to millimetres (lengths in reports).
M_TO_MM = 1000.0
#: Cubic metres to cubic centimetres (volumes in reports).
M3_TO_CM3 = 1e6


# ---------------------------------------------------------------------- validation helpers
def _check_hand(name: str, verts) -> None:
    """(B, V, 3) finite floating vertices with V >= 1."""
    check_points(name, verts)
    if verts.shape[1] == 0:
        raise ValueError(f"{name} hold no vertex (shape {tuple(verts.shape)})")


def _pack(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, M) bool, M >= 1 -> (B, K) indices of the True entries (front-packed, then the others
    in order: distinct in each row) and their (B, K) validity, K the largest count (at least 1)."""
    counts = mask.sum(1)
    K = max(int(counts.max()), 1)
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :K]
    valid = torch.arange(K, device=mask.device)[None] < counts[:, None]
    return order, valid


# ---------------------------------------------------------------------- MPVPE
def mpvpe(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean per-vertex position error.

    Args:
        pred, gt: (B, V, 3) corresponding vertices, metres, on one device.
        mask: (B, V) bool of the real vertices (e.g. ``Meshes.vert_mask``), or None (all).

    Returns:
        (B,) mean Euclidean vertex error over the real vertices, mm (0 for a sample with none).
    """
    check_points("pred", pred)
    check_points("gt", gt, pred.shape[0], pred.shape[1])
    check_device("gt", gt, pred.device, "pred")
    if mask is not None:
        check_mask("mask", mask, tuple(pred.shape[:2]))
        check_device("mask", mask, pred.device, "pred")
    err = (pred - gt).norm(dim=-1)
    if mask is None:
        return err.mean(1) * M_TO_MM
    m = mask.to(err.dtype)
    return (err * m).sum(1) / m.sum(1).clamp_min(1) * M_TO_MM


# ---------------------------------------------------------------------- PD, DD
def _inside_object(points: torch.Tensor, objects: Meshes, chunk: int | None) -> torch.Tensor:
    """(B, M) bool: points inside their sample's object (|winding| > 1/2); only points within the
    object's bounding box are tested (the others are outside)."""
    lo, hi = objects.bounds()
    cand = ((points >= lo[:, None]) & (points <= hi[:, None])).all(-1)
    inside = torch.zeros_like(cand)
    if not bool(cand.any()):
        return inside
    idx, ok = _pack(cand)
    q = torch.gather(points, 1, idx[..., None].expand(-1, -1, 3))
    w = winding_number(q, objects.triangles().to(points.dtype), objects.face_mask, chunk=chunk)
    inside.scatter_(1, idx, (w.abs() > 0.5) & ok)  # idx is a permutation prefix: no index repeats
    return inside & cand


def vertex_penetration(
    hand_verts: torch.Tensor, objects: Meshes, chunk: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which hand vertices are inside the object, and how deep.

    Inside: |generalised winding number| > 1/2, tested only for the vertices within the object's
    bounding box. Depth: the distance to the object surface (closest point on the triangles).

    Args:
        hand_verts: (B, V, 3) hand vertices, metres, V >= 1.
        objects: B object meshes (:class:`miho.mesh.Meshes`), metres, outward or inward faces, on
            the hand's device.
        chunk: point-triangle pairs held at once (memory bound; None: 2^20 on the CPU, 2^24 on a GPU).

    Returns:
        inside: (B, V) bool; depth: (B, V) metres, 0 for the vertices outside.
    """
    _check_hand("hand_verts", hand_verts)
    B = hand_verts.shape[0]
    check_meshes("objects", objects, B, hand_verts.device)
    depth = hand_verts.new_zeros(hand_verts.shape[:2])
    if B == 0:
        return depth.bool(), depth
    inside = _inside_object(hand_verts, objects, chunk)
    if not bool(inside.any()):
        return inside, depth
    idx, ok = _pack(inside)
    q = torch.gather(hand_verts, 1, idx[..., None].expand(-1, -1, 3))
    d, _ = point_triangle_distance(q, objects.triangles().to(q.dtype), objects.face_mask, chunk=chunk)
    return inside, depth.scatter_(1, idx, d * ok)  # the packed indices are distinct in each row


def penetration_depth(hand_verts: torch.Tensor, objects: Meshes, chunk: int | None = None) -> torch.Tensor:
    """Penetration depth (PD).

    The largest distance to the object surface over the hand vertices inside the object (|winding
    number| > 1/2, only vertices within the object's bounding box tested); 0 when none is inside
    (:func:`vertex_penetration` gives the vertices and their depths). Distance to the surface
    (closest point on the triangles), as GraspTTA measures it; the official CPF code uses the
    nearest object vertex instead, which is never smaller.

    Args:
        hand_verts: (B, V, 3) hand vertices, metres, V >= 1.
        objects: B object meshes (:class:`miho.mesh.Meshes`), metres, outward or inward faces.
        chunk: point-triangle pairs held at once (memory bound; None: 2^20 on the CPU, 2^24 on a GPU).

    Returns:
        (B,) mm.
    """
    _, depth = vertex_penetration(hand_verts, objects, chunk)
    if depth.shape[0] == 0:
        return depth.new_zeros(0)
    return depth.amax(1) * M_TO_MM


def disjointedness(
    hand_verts: torch.Tensor, tip_mask: torch.Tensor, objects: Meshes, chunk: int | None = None
) -> torch.Tensor:
    """Disjointedness distance (DD).

    The mean distance of the fingertip-region hand vertices to the object surface (paper §6.2:
    "the average distance of hand vertices in 5 fingertips region to their closest object
    surface"). Every tip vertex counts, wherever it is: a vertex inside the object contributes
    its (unsigned) distance to the surface too, so DD is 0 only when the fingertips lie on the
    surface, and penetration is not rewarded.

    Args:
        hand_verts: (B, V, 3) metres. tip_mask: (V,) bool, the fingertip-region vertices (e.g.
            ``hand_regions(hand).labels`` in :data:`miho.anchors.TIP_REGIONS`), at least one.
        objects: B object meshes, metres, on the hand's device.

    Returns:
        (B,) mm.
    """
    _check_hand("hand_verts", hand_verts)
    B, V = hand_verts.shape[:2]
    check_meshes("objects", objects, B, hand_verts.device)
    check_mask("tip_mask", tip_mask, (V,))
    if not bool(tip_mask.any()):
        raise ValueError("tip_mask selects no vertex")
    if B == 0:
        return hand_verts.new_zeros(0)
    q = hand_verts[:, tip_mask.to(hand_verts.device)]
    d, _ = point_triangle_distance(q, objects.triangles().to(q.dtype), objects.face_mask, chunk=chunk)
    return d.mean(1) * M_TO_MM


# ---------------------------------------------------------------------- SIV
def solid_intersection_volume(
    hand_verts: torch.Tensor, hand_faces: torch.Tensor, objects: Meshes, resolution: int = 80, **options
) -> torch.Tensor:
    """Solid intersection volume (SIV).

    The object's axis-aligned bounding box is split into ``resolution``^3 voxels (anisotropic
    when the box is); a voxel counts when its centre is inside both the object and the closed
    hand; SIV is the count times the voxel volume. The voxelisation, and the voxels themselves
    (e.g. to draw them), come from :func:`miho.voxels.intersection_voxels`.

    Args:
        hand_verts: (B, Vh, 3) vertices of a *closed* hand surface, metres (a :class:`HandModel`
            user passes ``hand.closed(vertices)``; any closed mesh works).
        hand_faces: (Fh, 3) or (B, Fh, 3) integer faces of the closed hand.
        objects: B object meshes, metres.
        resolution: voxels per axis (the paper uses 80).
        options: ``object_inside`` (``"auto"``: crossings for closed objects, generalised winding
            number for open ones; ``"crossings"``; ``"winding"``), ``hand_inside``
            (``"crossings"``, the default, or ``"winding"``), ``cache`` (a
            :class:`miho.voxels.VoxelCache`, True for :data:`miho.voxels.DEFAULT_VOXEL_CACHE`, or
            None) and ``chunk``, as :func:`miho.voxels.intersection_voxels` takes them.

    Returns:
        (B,) cm^3, in the hand vertices' dtype.
    """
    return intersection_voxels(hand_verts, hand_faces, objects, resolution, **options).volumes() * M3_TO_CM3


# ---------------------------------------------------------------------- one-call evaluation
_UNITS = {"HE": "mm", "OE": "mm", "PD": "mm", "SIV": "cm^3", "DD": "mm", "SD": "mm", "SD std": "mm"}


@dataclass
class MetricTable:
    """Per-sample metric values: ``columns`` maps a metric name to a (B,) tensor (CPU float64
    when :func:`evaluate` makes it), ``units`` a metric name to its unit."""

    columns: dict[str, torch.Tensor]
    units: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.columns, dict):
            raise ValueError(f"columns must be a dict of name -> (B,) tensor, got {type(self.columns).__name__}")
        lengths = set()
        for name, col in self.columns.items():
            check_tensor(f"columns[{name!r}]", col, (None,), finite=False)
            lengths.add(len(col))
        if len(lengths) > 1:
            raise ValueError(f"columns must all have one length, got {sorted(lengths)}")
        if not isinstance(self.units, dict) or not set(self.units) <= set(self.columns):
            raise ValueError("units must be a dict whose keys are column names")

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.columns[name]

    def mean(self) -> dict[str, float]:
        """Column means (NaN for an empty table)."""
        return {k: float(v.mean()) for k, v in self.columns.items()}

    def as_dict(self) -> dict:
        """``{"n": B, "units": {...}, "mean": {...}, "per_sample": {column: [values]}}``."""
        return {
            "n": len(self),
            "units": dict(self.units),
            "mean": self.mean(),
            "per_sample": {k: v.tolist() for k, v in self.columns.items()},
        }

    def to_markdown(self, per_sample: bool = False, digits: int = 2) -> str:
        """A Markdown table (:func:`miho.tables.markdown_table`): one row of means, preceded by
        one row per sample if asked; ``digits`` decimals."""
        heads = ["sample"] + [f"{k} ({self.units.get(k, '')})" for k in self.columns]
        rows = []
        if per_sample:
            rows += [[i] + [float(v[i]) for v in self.columns.values()] for i in range(len(self))]
        rows.append(["mean"] + list(self.mean().values()))
        return markdown_table(heads, rows, floatfmt=f".{digits}f")

    def __repr__(self) -> str:
        means = ", ".join(f"{k}={m:.3f} {self.units.get(k, '')}" for k, m in self.mean().items())
        return f"MetricTable(n={len(self)}: {means})"


def evaluate(
    hand_verts: torch.Tensor,
    objects: Meshes,
    *,
    hand=None,
    closed_hand: tuple[torch.Tensor, torch.Tensor] | None = None,
    tip_mask: torch.Tensor | None = None,
    gt_hand_verts: torch.Tensor | None = None,
    gt_obj_verts: torch.Tensor | Meshes | None = None,
    simulate: bool = False,
    sim_settings=None,
    sim_options: dict | None = None,
    resolution: int = 80,
    voxel_cache: VoxelCache | bool | None = True,
) -> MetricTable:
    """Score a batch of hand-object reconstructions with the paper's metrics (§6.2).

    Args:
        hand_verts: (B, V, 3) predicted (posed) hand vertices, metres.
        objects: B predicted object meshes (:class:`miho.mesh.Meshes`), metres.
        hand: a :class:`miho.hand.model.HandModel` of V vertices; gives the closed hand surface
            (``hand.closed``) and the fingertip vertices (regions :data:`~miho.anchors.TIP_REGIONS`).
            Otherwise pass both ``closed_hand`` and ``tip_mask``.
        closed_hand: (verts (B, Vc, 3), faces (Fc, 3) or (B, Fc, 3)) of the closed hand.
        tip_mask: (V,) bool, fingertip-region vertices of ``hand_verts``.
        gt_hand_verts: (B, V, 3) ground truth for HE (omitted when None).
        gt_obj_verts: (B, N, 3) ground-truth object vertices padded like ``objects.verts``
            (or a :class:`Meshes`) for OE (omitted when None).
        simulate: add SD (:func:`miho.simulation.simulation_displacement`, CPU processes).
        sim_settings: a :class:`miho.simulation.SimSettings` (default ``SimSettings()``: the mean of 5
            runs with the hand jittered within 0.1 mm, and ``SD std``; :data:`miho.simulation.OBMAN`: as published).
        sim_options: extra keyword arguments of ``simulation_displacement`` (workers, cache_dir,
            progress, gravity).
        resolution: SIV voxels per axis.
        voxel_cache: see :func:`solid_intersection_volume`.

    Returns:
        :class:`MetricTable` with columns HE, OE (when ground truth is given), PD, SIV, DD, SD
        (when ``simulate``); each (B,), empty for an empty batch.
    """
    _check_hand("hand_verts", hand_verts)
    B, V = hand_verts.shape[:2]
    check_meshes("objects", objects, B, hand_verts.device)
    if hand is not None:
        from miho.anchors import hand_regions

        if V != hand.num_vertices:
            raise ValueError(f"hand_verts have {V} vertices but the hand model has {hand.num_vertices}")
        closed_hand = hand.closed(hand_verts)
        tip_mask = hand_regions(hand).tip_mask.to(hand_verts.device)
    if closed_hand is None or tip_mask is None:
        raise ValueError("evaluate needs a HandModel (hand=) or both closed_hand= and tip_mask=")
    if not isinstance(closed_hand, (tuple, list)) or len(closed_hand) != 2:
        raise ValueError("closed_hand must be a (verts, faces) pair")
    cv, cf = closed_hand
    _check_hand("closed_hand verts", cv)
    if cv.shape[0] != B:
        raise ValueError(f"closed_hand verts have batch {cv.shape[0]} but hand_verts {B}")
    batched = isinstance(cf, torch.Tensor) and cf.dim() == 3
    check_faces("closed_hand faces", cf, cv.shape[1], batch=B if batched else None)  # (Fc, 3) or (B, Fc, 3)
    check_mask("tip_mask", tip_mask, (V,))
    cols: dict[str, torch.Tensor] = {}
    if gt_hand_verts is not None:
        check_points("gt_hand_verts", gt_hand_verts, B, V)
        cols["HE"] = mpvpe(hand_verts, gt_hand_verts.to(hand_verts.device))
    if gt_obj_verts is not None:
        gt = gt_obj_verts.verts if isinstance(gt_obj_verts, Meshes) else gt_obj_verts
        check_points("gt_obj_verts", gt, B, objects.verts.shape[1])
        cols["OE"] = mpvpe(objects.verts, gt.to(objects.verts.device, objects.verts.dtype), objects.vert_mask)
    cols["PD"] = penetration_depth(hand_verts, objects)
    cols["SIV"] = solid_intersection_volume(cv, cf, objects, resolution=resolution, cache=voxel_cache)
    cols["DD"] = disjointedness(hand_verts, tip_mask, objects)
    if simulate:
        cols.update(simulation_columns((cv, cf), objects, sim_settings, sim_options))
    cols = {k: v.detach().cpu().double() for k, v in cols.items()}
    return MetricTable(cols, {k: _UNITS[k] for k in cols})


def simulation_columns(closed_hand: tuple, objects: Meshes, sim_settings=None,
                       sim_options: dict | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
    """SD of B grasps (:func:`miho.simulation.simulation_displacement`, CPU processes), the column
    :func:`evaluate` adds with ``simulate``.

    Args:
        closed_hand: (verts (B, Vc, 3), faces (Fc, 3) or (B, Fc, 3)) of the closed hands, metres.
        objects: the B objects (:class:`miho.mesh.Meshes`), metres.
        sim_settings, sim_options: as :func:`evaluate`'s.

    Returns:
        ``"SD"`` (B,) mm, the mean over the runs, and ``"SD std"`` (B,) mm, their spread, when the
        settings make several (jittered) runs a grasp.
    """
    from miho.simulation import simulation_displacement

    cv, cf = closed_hand
    B = cv.shape[0]
    check_meshes("objects", objects, B, cv.device)
    meshes = [objects.mesh(b) for b in range(B)]
    sd = []
    if B:
        sd = simulation_displacement(
            cv.detach().cpu().double().numpy(),
            cf.cpu().numpy() if cf.dim() == 2 else [f.cpu().numpy() for f in cf],
            [v.detach().cpu().double().numpy() for v, _ in meshes],
            [f.cpu().numpy() for _, f in meshes],
            settings=sim_settings,
            per_run=True,
            **(sim_options or {}),
        )
    runs = torch.as_tensor(sd, dtype=torch.float64).reshape(B, -1)
    cols = {"SD": runs.mean(1)}
    if runs.shape[1] > 1:  # jittered runs (the default): their spread too
        cols["SD std"] = runs.std(1, unbiased=False)
    return cols


__all__ = [
    "M3_TO_CM3",
    "M_TO_MM",
    "MetricTable",
    "VoxelCache",  # re-exported: evaluate() and callers name the cache type from here
    "disjointedness",
    "evaluate",
    "mpvpe",
    "penetration_depth",
    "simulation_columns",
    "solid_intersection_volume",
    "vertex_penetration",
]
