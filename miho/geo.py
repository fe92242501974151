"""GeO, the Grasping Energy Optimizer (paper §5.3, Eq. 11, Supp D.1), for a whole batch at once.

GeO moves the hand (wrist rotation and translation, the 15 joint rotations, or with
``pose_pca`` the coefficients of a PCA pose space (Supp D.2, Table 6), optionally the shape)
and, in ``"hand-object"`` mode, the object's 6D pose, to minimise

    w_contact * E_contact + w_repulsion * E_rpl + w_anat * L_anat + w_offset * L_offset

per sample, where E_contact is the CPF attraction (or a baseline contact term), E_rpl the CPF
repulsion, L_anat the A-MANO cost and L_offset the mean squared displacement of the hand and
object vertices from their initial positions (m^2).

Optimiser: Adam (lr 1e-2; translations 0.1x) with ReduceLROnPlateau (factor 0.5, patience 20,
min lr 1e-5) tracked **per sample**: every sample has its own learning rate and plateau
counter, and its loss depends only on its own parameters, so a sample's result does not depend
on which other samples share its batch. 400 iterations by default, no early stop.

A sample with fewer than 1 % of its object vertices in contact (``vc > t_vc``) is skipped
(CPF mode): it keeps its input pose and is flagged in :attr:`GeOResult.skipped`.

Contact terms (``contact=``), all with the same optimiser and regularisers (Table 2):

* ``"cpf"``: the CPF attraction (Algorithm 1), fingertip anchors weighted 1.0, others 0.1;
* ``"vanilla"``: each fingertip anchor pulled to its nearest object vertex when closer than
  ``vanilla_threshold`` (20 mm): ``0.5 d^2``;
* ``"obman"``: the attraction of Hasson et al. (CVPR 2019), written from that paper's
  description: for each contact-prone region (the five fingertips and the palm) within
  ``obman_threshold`` of the object, ``alpha * tanh(d / alpha)`` of its closest palm-side vertex
  distance (alpha = 1 cm).

Repulsion terms (``repulsion=``): ``"cpf"`` (E_rpl, elasticity ``k_rpl``: Table 5), ``"obman"``
(Hasson et al.: ``r * tanh(depth / r)``, r = 2 cm, depth to the nearest object vertex, for every
hand vertex inside the object by generalised winding number) or ``"none"`` (Table 3). Each term
is a function ``term(problem, frame) -> (B,)`` in :data:`CONTACT_TERMS` / :data:`REPULSION_TERMS`,
chosen once per run. Nearest neighbours and inside tests are refreshed every ``rpl_refresh``
iterations (:func:`find_neighbours`). :data:`BASELINES` holds the settings of the paper's
ablations and :data:`GRASP_SYNTHESIS` those of Supp C.2 (attraction of Hasson et al. + E_rpl +
L_anat, hand only), used to make grasps without a known CPF.

E_rpl's pairs. The paper's Eq. 3 sums the repulsive springs over every (hand vertex, object vertex)
pair closer than t_rpl = 20 mm, and that is the default (``rpl_neighbours=None``: pairs searched
within ``rpl_search`` = 24 mm, counted within t_rpl at each iteration). A sample's pairs are
searched again (:func:`refresh_pairs`, that sample alone) as soon as its hand's and its object's
largest vertex displacements since its last search add up to more than the margin ``rpl_search -
t_rpl``: a pair within t_rpl now was then within t_rpl + margin, so none is ever missed, and the sum
is Eq. 3 exactly. (From HoNet's starts, centimetres from any grasp, GeO moves fingertips by
millimetres an iteration, nearly every sample drifts past the margin every iteration or two, and the
searches took about 75 % of GeO's time in a profile of 8 such samples, with the whole batch searched
again as soon as one sample drifted, as until 2026-12-07 evening, or only the drifted ones alike.)
(Until 2026-12-07 the search radius was the official code's 30 mm with a refresh every 10 iterations
and no such check: twice as many pairs, 430 000 a sample on disturbed SynthHO grasps against 218 000
within 24 mm and 123 000 that count, for the same result: 80 iterations on 4 such grasps end on the
same vertices, bit for bit, at 80 ms an iteration against 103 on an otherwise idle 2-core CPU. A 21
mm search, with its 1 mm margin, searches so often that it is slower than either.)
The official code keeps only each object vertex's 50 nearest hand vertices
(``rpl_neighbours=50``, this package's default before issue 10). Where a hand touches an object,
120-330 hand vertices lie within 20 mm of an object vertex, so the cap drops most pairs and,
worse, stops the push from growing as the hand closes in: with the paper's length scale (1 m,
``exp(-2x)`` is nearly 1 - 2x over 20 mm) each spring pushes about as hard 10 mm inside as 10 mm
outside, so the push grows only with the number of pairs in range. Capped, E_rpl's push on
disturbed held-out SynthHO grasps was -17 to -21 (a.u., median) from 10 mm outside to 10 mm
inside the true grasp, against the attraction's +29 at the truth, and GeO took hands from any
start, outside or inside, to about 1.5 mm deeper than the truth (from the truth itself too).
Neither the start's direction nor the refresh every 10 iterations mattered (refreshing every
iteration changed PD by 0.06 mm). With every pair the push grows from -28 at 10 mm outside to
-47 at the truth, and from the same 32 disturbed starts the hands ended with PD 1.2 mm (truth
2.2, capped 2.9) and below the truth's PD + 0.5 mm in 88 % of the samples (capped: 38 %), at the
same hand error (README, "GeO from any direction"). Shorter length scales make things worse:
a spring's projection on the normal of an object vertex other than the nearest is no signed
distance, and with a few-mm scale those springs push many hands inwards.

Objects must face outwards (positive :meth:`~miho.mesh.Meshes.signed_volumes`): E_rpl pushes
along the vertex normals, so an inverted mesh would pull the hand in; :func:`optimize` refuses
such objects with a ``ValueError`` naming the samples (:func:`inward_samples`).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from miho import amano
from miho import cpf as cpf_mod
from miho.anchors import PALM, TIP_REGIONS, HandRegions, hand_regions
from miho.checks import check_batch, check_tensor
from miho.geometry import nearest_vertex, nearest_vertex_inside, winding_number
from miho.hand.model import HandModel
from miho.hand.pca import PosePCA
from miho.mesh import Meshes, vertex_normals
from miho.optim import BatchAdam, BatchPlateau
from miho.rotations import axis_angle_to_matrix, matrix_to_axis_angle


@dataclass
class GeOConfig:
    """Options of :func:`optimize`, with the defaults of the paper / official code."""

    mode: str = "hand-object"  # or "hand": the object stays where it is
    contact: str = "cpf"  # "cpf", "vanilla" or "obman"
    repulsion: str = "cpf"  # "cpf", "obman" or "none"
    iterations: int = 400
    lr: float = 1e-2
    trans_lr_scale: float = 0.1  # translations learn 10x slower
    plateau_factor: float = 0.5
    plateau_patience: int = 20
    plateau_threshold: float = 1e-4  # relative improvement that resets the plateau counter
    min_lr: float = 1e-5
    w_contact: float = 10.0  # official contact weight
    w_repulsion: float = 2.0  # official: 0.5 (FHB), 2-6 (HO3D); 2 (chosen with the 50-nearest pairs, kept)
    w_anat: float = 1.0  # L_anat in radians, as Eq. 11 (weight 1)
    w_offset: float = 1.0  # L_offset in m^2 (mean squared vertex displacement), as Eq. 11
    k_rpl: float = cpf_mod.K_RPL
    t_rpl: float = cpf_mod.T_RPL
    rpl_neighbours: int | None = None  # None: every pair within t_rpl (Eq. 3); n: the n nearest (official: 50)
    rpl_search: float = 0.024  # pairs are searched within this distance; see "E_rpl's pairs" (official: 30 mm)
    rpl_refresh: int = 10  # recompute repulsion neighbours / inside tests every n iterations
    t_vc: float = cpf_mod.T_VC
    tip_anchor_weight: float = 1.0
    other_anchor_weight: float = 0.1
    optimize_shape: bool = False
    min_contact_fraction: float = 0.01
    vanilla_threshold: float = 0.02
    obman_alpha: float = 0.01
    obman_r: float = 0.02
    obman_threshold: float = 0.02
    obman_inside: str = "winding"  # or "normal": nearest-vertex normal test (cheap, fooled by thin walls)
    record_every: int = 0  # keep hand/object vertices every n iterations (0: never)
    progress: bool = False
    pose_pca: PosePCA | None = None  # fit these PCA coefficients, not the 15 joint rotations (Table 6)

    def __post_init__(self) -> None:
        if self.mode not in ("hand", "hand-object"):
            raise ValueError(f"mode must be 'hand' or 'hand-object', got {self.mode!r}")
        if self.contact not in ("cpf", "vanilla", "obman"):
            raise ValueError(f"contact must be 'cpf', 'vanilla' or 'obman', got {self.contact!r}")
        if self.repulsion not in ("cpf", "obman", "none"):
            raise ValueError(f"repulsion must be 'cpf', 'obman' or 'none', got {self.repulsion!r}")
        if self.obman_inside not in ("winding", "normal"):
            raise ValueError(f"obman_inside must be 'winding' or 'normal', got {self.obman_inside!r}")
        if self.iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {self.iterations}")
        if self.rpl_refresh < 1:
            raise ValueError(f"rpl_refresh must be >= 1, got {self.rpl_refresh}")
        if self.rpl_neighbours is not None and self.rpl_neighbours < 1:
            raise ValueError(f"rpl_neighbours must be None or >= 1, got {self.rpl_neighbours}")
        if self.rpl_search < self.t_rpl:
            raise ValueError(f"rpl_search ({self.rpl_search} m) must be at least t_rpl ({self.t_rpl} m)")
        if self.record_every < 0:
            raise ValueError(f"record_every must be >= 0, got {self.record_every}")
        if self.pose_pca is not None and not isinstance(self.pose_pca, PosePCA):
            raise ValueError(f"pose_pca must be None or a miho.hand.PosePCA, got {type(self.pose_pca).__name__}")


#: The paper's contact heuristics and ablations (Table 2, 3) as :class:`GeOConfig` overrides.
BASELINES = {
    "cpf": {},
    "vanilla": dict(contact="vanilla", repulsion="none"),
    "obman": dict(contact="obman", repulsion="obman"),
    "cpf without E_rpl": dict(repulsion="none"),
}
#: Grasp synthesis without a known CPF (Supp C.2): hand only, free to leave its start. Supp C.2
#: keeps E_rpl, but with the paper's k_rpl its nearly constant push cannot stop an attraction
#: that closes an open hand from pulling fingers into the object; Hasson et al.'s repulsion,
#: weighted 5, keeps synthesised grasps within about 1 mm of penetration.
GRASP_SYNTHESIS = dict(
    mode="hand",
    contact="obman",
    repulsion="obman",
    w_repulsion=5.0,
    w_offset=0.0,
    obman_threshold=0.1,
    obman_alpha=0.05,
)


#: The loss terms :attr:`GeOResult.history` records, each (T, B).
HISTORY_TERMS = ("total", "contact", "repulsion", "anat", "offset")


@dataclass
class GeOResult:
    """Refined poses (B samples) and what happened on the way.

    pose (B, 16, 3), trans (B, 3), shape (B, S): the hand. obj_rot (B, 3, 3), obj_trans (B, 3):
    the object motion applied about its centroid c, v' = R (v - c) + c + t.
    hand_verts (B, V, 3), obj_verts (B, N, 3): the refined meshes.
    skipped (B,) bool. history: loss terms per iteration, each (T, B).
    trajectory: (T', B, V, 3) hand and (T', B, N, 3) object vertices if recorded.
    lr: (B,) the final learning rates.
    """

    pose: torch.Tensor
    trans: torch.Tensor
    shape: torch.Tensor
    obj_rot: torch.Tensor
    obj_trans: torch.Tensor
    hand_verts: torch.Tensor
    obj_verts: torch.Tensor
    skipped: torch.Tensor
    lr: torch.Tensor
    history: dict = field(default_factory=dict)
    trajectory: dict = field(default_factory=dict)


@dataclass
class Problem:
    """What stays fixed while GeO refines B samples, as the energy terms read it.

    cfg: the settings. field: the CPF on the objects' vertices (None without ``contact="cpf"``).
    regions: the hand's subregions and anchors. objects: the B objects (topology and masks; their
    vertices move). anchor_weight: (A,) weight of each anchor's springs (fingertips 1.0, others 0.1;
    None where no CPF term reads it).
    tip_anchor: (A,) bool, fingertip anchors. contact_prone: (6, V) bool, palm-side vertices of
    the five fingertip regions and the palm (Hasson et al.'s contact-prone regions).
    """

    cfg: GeOConfig
    field: cpf_mod.CPF | None
    regions: HandRegions
    objects: Meshes
    anchor_weight: torch.Tensor | None
    tip_anchor: torch.Tensor
    contact_prone: torch.Tensor


@dataclass
class Neighbours:
    """Nearest-neighbour searches and inside tests of one refresh (no gradient; None: not
    needed by the chosen terms). nearest: (B, V) long, each hand vertex's nearest object vertex.
    inside: (B, V) bool, hand vertices inside their object. hand_index: (B, N, K) long, the K
    nearest hand vertices of each object vertex (E_rpl's pairs with ``rpl_neighbours=K``). pairs:
    (3, P) long, every (object vertex, hand vertex) pair closer than ``rpl_search`` (E_rpl's pairs
    with ``rpl_neighbours=None``), as rows (sample b, flat object index b N + j, flat hand index
    b V + i)."""

    nearest: torch.Tensor | None = None
    inside: torch.Tensor | None = None
    hand_index: torch.Tensor | None = None
    pairs: torch.Tensor | None = None


@dataclass
class Frame:
    """One iteration's geometry: hand_verts (B, V, 3), obj_verts (B, N, 3) and their unit
    outward obj_normals (B, N, 3), metres, and the :class:`Neighbours` of the last refresh."""

    hand_verts: torch.Tensor
    obj_verts: torch.Tensor
    obj_normals: torch.Tensor
    found: Neighbours

    @functools.cached_property
    def nearest_distance(self) -> torch.Tensor:
        """(B, V) distance of every hand vertex to its nearest object vertex of the last refresh,
        metres, computed once for every term that reads it (the gradient flows through that
        pair, as it would through a min)."""
        j = self.found.nearest[..., None].expand(-1, -1, 3)
        return (self.hand_verts - torch.gather(self.obj_verts, 1, j)).norm(dim=-1)


def find_neighbours(p: Problem, hand_verts: torch.Tensor, obj_verts: torch.Tensor, normals: torch.Tensor,
                    pairs: torch.Tensor | None = None) -> Neighbours:  # fmt: skip
    """The searches the chosen terms need (see :class:`Neighbours`), without gradient; GeO
    refreshes them every ``cfg.rpl_refresh`` iterations. ``pairs``: E_rpl's pairs to keep rather
    than search again (GeO keeps them up to date with :func:`refresh_pairs`)."""
    cfg, found = p.cfg, Neighbours(pairs=pairs)
    with torch.no_grad():
        if "obman" in (cfg.contact, cfg.repulsion):
            omask = p.objects.vert_mask
            if cfg.obman_inside == "normal":
                found.inside, found.nearest = nearest_vertex_inside(hand_verts, obj_verts, normals, omask)
            else:
                tris = torch.gather(obj_verts, 1, p.objects.faces.reshape(len(obj_verts), -1, 1).expand(-1, -1, 3))
                w = winding_number(hand_verts, tris.reshape(len(obj_verts), -1, 3, 3), p.objects.face_mask)
                found.inside, found.nearest = w.abs() > 0.5, nearest_vertex(hand_verts, obj_verts, omask)
        if cfg.repulsion == "cpf":
            if cfg.rpl_neighbours is None:
                if pairs is None:
                    found.pairs = pairs_within(hand_verts, obj_verts, p.objects.vert_mask, cfg.rpl_search)
            else:
                found.hand_index = cpf_mod.nearest_hand_vertices(hand_verts, obj_verts, cfg.rpl_neighbours)[0]
    return found


def drifted(searched, hand_verts: torch.Tensor, obj_verts: torch.Tensor, obj_mask: torch.Tensor,
            cfg: GeOConfig) -> torch.Tensor:  # fmt: skip
    """(B,) bool: the samples whose hand and object moved, together, by more than
    ``rpl_search - t_rpl`` since the vertices ``searched`` (see "E_rpl's pairs" in the module
    docstring)."""
    hand0, obj0 = searched
    with torch.no_grad():
        moved = (hand_verts - hand0).norm(dim=-1).amax(1)
        moved = moved + torch.where(obj_mask, (obj_verts - obj0).norm(dim=-1), 0.0).amax(1)
    return moved > cfg.rpl_search - cfg.t_rpl


def refresh_pairs(pairs: torch.Tensor, redo: torch.Tensor, hand_verts: torch.Tensor, obj_verts: torch.Tensor,
                  obj_mask: torch.Tensor, radius: float) -> torch.Tensor:  # fmt: skip
    """E_rpl's pairs (:func:`pairs_within`'s rows) with those of the samples ``redo`` ((B,) bool)
    searched again at the current vertices; the others kept. The rows come in the order a search
    of the whole batch gives (sample, object vertex, hand vertex), so the energy's sums do too."""
    N, V = obj_verts.shape[1], hand_verts.shape[1]
    idx = redo.nonzero()[:, 0]
    local = pairs_within(hand_verts[idx], obj_verts[idx], obj_mask[idx], radius)
    s_local = local[0]
    s = idx[s_local]
    j, i = local[1] - s_local * N, local[2] - s_local * V
    merged = torch.cat((pairs[:, ~redo[pairs[0]]], torch.stack((s, s * N + j, s * V + i))), 1)
    order = torch.argsort(merged[1] * V + (merged[2] - merged[0] * V))
    return merged[:, order]


def cpf_contact(p: Problem, f: Frame) -> torch.Tensor:
    """CPF attraction (Algorithm 1), anchors weighted by ``p.anchor_weight``: (B,), m^2."""
    return cpf_mod.attraction_energy(p.regions.anchors(f.hand_verts), f.obj_verts, p.field, p.regions.anchor_region,
                                     p.objects.vert_mask, p.cfg.t_vc, p.anchor_weight)  # fmt: skip


def vanilla_contact(p: Problem, f: Frame) -> torch.Tensor:
    """Fingertip anchors pulled to their nearest object vertex within ``vanilla_threshold``:
    ``0.5 d^2`` each, (B,), m^2."""
    tips = p.regions.anchors(f.hand_verts)[:, p.tip_anchor]
    j = nearest_vertex(tips, f.obj_verts, p.objects.vert_mask)
    d = (tips - torch.gather(f.obj_verts, 1, j[..., None].expand(-1, -1, 3))).norm(dim=-1)
    return 0.5 * torch.where(d < p.cfg.vanilla_threshold, d, torch.zeros_like(d)).square().sum(-1)


def obman_contact(p: Problem, f: Frame) -> torch.Tensor:
    """Hasson et al.'s attraction: for each contact-prone region within ``obman_threshold``,
    ``alpha tanh(d / alpha)`` of its closest vertex's distance d. (B,), metres."""
    d = f.nearest_distance
    attraction = d.new_zeros(d.shape[0])
    for region in p.contact_prone:  # six regions
        dr = d[:, region].min(-1).values
        on = dr < p.cfg.obman_threshold
        attraction = attraction + torch.where(on, p.cfg.obman_alpha * torch.tanh(dr / p.cfg.obman_alpha), 0.0)
    return attraction


def contact_prone_regions(regions: HandRegions) -> torch.Tensor:
    """(6, V) bool: the palm-side vertices of the five fingertip regions and of the palm (Hasson
    et al.'s contact-prone regions), as :func:`obman_contact` reads them."""
    return torch.stack([(regions.labels == r) & regions.palm_side for r in (*TIP_REGIONS, PALM)])


def obman_losses(hand: HandModel, hand_verts: torch.Tensor, objects: Meshes, config: GeOConfig | None = None,
                 regions: HandRegions | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Hasson et al.'s attraction and repulsion (:func:`obman_contact`, :func:`obman_repulsion`) of
    B hands and their objects in one frame, differentiable in both: what ObMan* (Table 1) adds to
    HoNet's training.

    Args:
        hand: the hand model the vertices come from (its subregions).
        hand_verts: (B, V, 3) metres. objects: the B objects, faces outwards, metres.
        config: the thresholds and the inside test (``obman_threshold``, ``obman_alpha``,
            ``obman_r``, ``obman_inside``; default :class:`GeOConfig`'s).
        regions: ``hand_regions(hand)``, when the caller holds it.

    Returns:
        attraction (B,) and repulsion (B,), metres.
    """
    check_tensor("hand_verts", hand_verts, (objects.verts.shape[0], hand.num_vertices, 3))
    cfg = dataclasses.replace(config or GeOConfig(), contact="obman", repulsion="obman")
    regions = regions if regions is not None else hand_regions(hand)
    normals = vertex_normals(objects.verts, objects.faces, objects.face_mask)
    problem = Problem(cfg, None, regions, objects, anchor_weight=None, tip_anchor=regions.tip_anchor,
                      contact_prone=contact_prone_regions(regions).to(hand_verts.device))  # fmt: skip
    frame = Frame(hand_verts, objects.verts, normals, find_neighbours(problem, hand_verts, objects.verts, normals))
    return obman_contact(problem, frame), obman_repulsion(problem, frame)


def pairs_within(hand_verts: torch.Tensor, obj_verts: torch.Tensor, obj_mask: torch.Tensor, radius: float,
                 chunk: int = 8) -> torch.Tensor:  # fmt: skip
    """Every (object vertex, hand vertex) pair of a sample closer than ``radius`` metres, without
    gradient, ``chunk`` samples per distance matrix: (3, P) long rows (sample b, flat object
    index b N + j, flat hand index b V + i). hand_verts (B, V, 3), obj_verts (B, N, 3), obj_mask
    (B, N) bool (padding never pairs)."""
    (B, N), V = obj_verts.shape[:2], hand_verts.shape[1]
    parts = []
    with torch.no_grad():
        for b in range(0, B, chunk):
            near = torch.cdist(obj_verts[b : b + chunk], hand_verts[b : b + chunk]) < radius
            parts.append((near & obj_mask[b : b + chunk, :, None]).nonzero())
            parts[-1][:, 0] += b
    found = torch.cat(parts)
    s, j, i = found.unbind(1)
    return torch.stack((s, s * N + j, s * V + i))


def cpf_repulsion(p: Problem, f: Frame) -> torch.Tensor:
    """E_rpl of Algorithm 1 (Eq. 2-3), ``0.5 k_rpl exp(-2 (h - v) . n)`` for every hand vertex h
    within ``t_rpl`` of an object vertex v (normal n), among the pairs of the last refresh:
    (B,). With ``rpl_neighbours=None`` those are all the pairs closer than ``rpl_search``; with
    an int, each object vertex's that many nearest hand vertices
    (:func:`miho.cpf.repulsion_energy`, the official code's shortcut)."""
    cfg = p.cfg
    if f.found.pairs is None:
        return cpf_mod.repulsion_energy(f.hand_verts, f.obj_verts, f.obj_normals, p.objects.vert_mask, cfg.k_rpl,
                                        cfg.t_rpl, neighbour_index=f.found.hand_index)  # fmt: skip
    s, o, h = f.found.pairs

    # torch.gather, not x[h]: its backward (scatter_add) sums in a fixed order; that of advanced
    # indexing (index_put with accumulate) does not on a multi-threaded CPU (run-to-run ulps).
    def rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return torch.gather(x.reshape(-1, 3), 0, index[:, None].expand(-1, 3))

    off = rows(f.hand_verts, h) - rows(f.obj_verts, o)
    proj = (off * rows(f.obj_normals, o)).sum(-1)
    spring = 0.5 * cfg.k_rpl * torch.exp(-2.0 * proj) * (off.square().sum(-1) <= cfg.t_rpl**2)
    return f.hand_verts.new_zeros(len(f.hand_verts)).index_add(0, s, spring)


def obman_repulsion(p: Problem, f: Frame) -> torch.Tensor:
    """Hasson et al.'s repulsion: ``r tanh(depth / r)`` for every hand vertex inside its object,
    depth its distance to the nearest object vertex. (B,), metres."""
    d = f.nearest_distance
    depth = torch.where(f.found.inside, d, torch.zeros_like(d))
    return (p.cfg.obman_r * torch.tanh(depth / p.cfg.obman_r)).sum(-1)


def no_repulsion(p: Problem, f: Frame) -> torch.Tensor:
    """No repulsion (Table 3): zeros (B,)."""
    return f.hand_verts.new_zeros(f.hand_verts.shape[0])


#: Contact terms by :attr:`GeOConfig.contact`: ``term(problem, frame) -> (B,)``.
CONTACT_TERMS = {"cpf": cpf_contact, "vanilla": vanilla_contact, "obman": obman_contact}
#: Repulsion terms by :attr:`GeOConfig.repulsion`: ``term(problem, frame) -> (B,)``.
REPULSION_TERMS = {"cpf": cpf_repulsion, "obman": obman_repulsion, "none": no_repulsion}


def inward_samples(objects: Meshes) -> torch.Tensor:
    """(B,) bool: objects whose faces point inwards, i.e. whose signed volume
    (:meth:`miho.mesh.Meshes.signed_volumes`) is negative beyond rounding: below -1e-6 times the
    cube of the longest side of the object's bounding box. Flat meshes and open fans of zero
    volume are not flagged."""
    if objects.batch == 0:
        return torch.zeros(0, dtype=torch.bool, device=objects.verts.device)
    m = objects.vert_mask[..., None]
    hi = torch.where(m, objects.verts, -torch.inf).amax(1)
    lo = torch.where(m, objects.verts, torch.inf).amin(1)
    extent = (hi - lo).amax(-1).nan_to_num(0.0, posinf=0.0, neginf=0.0)
    return objects.signed_volumes() < -1e-6 * extent**3


def check_inputs(hand: HandModel, pose, objects, field, shape, trans, cfg: GeOConfig) -> None:
    """Raise ``ValueError`` naming the argument unless the inputs of :func:`optimize` fit together
    (shapes, batch sizes, a CPF on the objects' vertices, outward-facing objects)."""
    check_tensor("pose", pose, (None, 16, 3))
    B = pose.shape[0]
    if not isinstance(objects, Meshes):
        raise ValueError(f"objects must be a miho.mesh.Meshes, got {type(objects).__name__}")
    check_batch("objects", objects.batch, B, "pose")
    N = objects.verts.shape[1]
    inward = inward_samples(objects)
    if inward.any():
        raise ValueError(f"objects samples {inward.nonzero()[:, 0].tolist()} face inwards (negative signed volume): "
                         "GeO's repulsion would push those hands into them; flip their faces "
                         "(faces[..., [0, 2, 1]]) or fix the meshes")  # fmt: skip
    for name, value, size in (("shape", shape, hand.num_shape), ("trans", trans, 3)):
        if value is None:
            continue
        check_tensor(name, value, None)
        if value.shape not in ((size,), (1, size), (B, size)):
            raise ValueError(f"{name} must have shape ({B}, {size}), (1, {size}) or ({size},), "
                             f"got {tuple(value.shape)}")  # fmt: skip
    if cfg.contact == "cpf":
        if field is None:
            raise ValueError("contact='cpf' needs a CPF (cpf=...)")
        if not isinstance(field, cpf_mod.CPF):
            raise ValueError(f"cpf must be a miho.cpf.CPF, got {type(field).__name__}")
        if tuple(field.vc.shape) != (B, N):
            raise ValueError(f"cpf must lie on the objects' vertices: shape ({B}, {N}), got {tuple(field.vc.shape)}")


def empty_result(hand: HandModel, objects: Meshes, cfg: GeOConfig) -> GeOResult:
    """The :class:`GeOResult` of an empty batch (B = 0), every tensor with its usual trailing shape."""
    dev, dt = hand.device, hand.dtype
    z = lambda *s: torch.zeros(*s, device=dev, dtype=dt)  # noqa: E731
    recorded = len(range(0, cfg.iterations, cfg.record_every)) + 1 if cfg.record_every else 0
    traj = dict(hand=z(recorded, 0, hand.num_vertices, 3), object=z(recorded, *objects.verts.shape)) if recorded else {}
    return GeOResult(pose=z(0, 16, 3), trans=z(0, 3), shape=z(0, hand.num_shape), obj_rot=z(0, 3, 3), obj_trans=z(0, 3),
                     hand_verts=z(0, hand.num_vertices, 3), obj_verts=objects.verts.to(dev, dt),
                     skipped=torch.zeros(0, dtype=torch.bool, device=dev), lr=z(0),
                     history={k: z(cfg.iterations, 0) for k in HISTORY_TERMS}, trajectory=traj)  # fmt: skip


def optimize(
    hand: HandModel,
    pose: torch.Tensor,
    objects: Meshes,
    cpf: cpf_mod.CPF | None = None,
    shape: torch.Tensor | None = None,
    trans: torch.Tensor | None = None,
    config: GeOConfig | None = None,
    **overrides,
) -> GeOResult:
    """Refine B hand-object pairs together (see the module docstring).

    Args:
        hand: the hand model (its device and dtype are used).
        pose: (B, 16, 3) initial axis-angle pose, radians.
        objects: the B objects (:class:`~miho.mesh.Meshes`), posed in the hand's frame, metres,
            faces pointing outwards (positive :meth:`~miho.mesh.Meshes.signed_volumes`).
        cpf: the contact field on the objects' vertices, (B, N) (needed for ``contact="cpf"``).
        shape: (B, S), (1, S) or (S,) hand shape, or None (the mean hand).
        trans: (B, 3), (1, 3) or (3,) hand translation, metres, or None (zero).
        config: a :class:`GeOConfig`; ``overrides`` replace single fields of it.

    Returns:
        :class:`GeOResult`; an empty batch (B = 0) gives an empty result.

    Raises:
        ValueError: misshapen or non-finite inputs, a batch mismatch, a CPF that does not lie on
            the objects' vertices, or an object whose faces
            point inwards (:func:`inward_samples`): GeO refuses it rather than flip it, because
            its repulsion follows the vertex normals and would drive the hand into the object, and
            a mesh that comes inverted is better fixed where it was made.
    """
    cfg = config or GeOConfig()
    if overrides:
        cfg = GeOConfig(**{**cfg.__dict__, **overrides})
    check_inputs(hand, pose, objects, cpf, shape, trans, cfg)
    B = pose.shape[0]
    if B == 0:
        return empty_result(hand, objects, cfg)
    dev, dt = hand.device, hand.dtype
    pose = pose.to(dev, dt)
    shape = torch.zeros(B, hand.num_shape, device=dev, dtype=dt) if shape is None else shape.to(dev, dt).expand(B, -1)
    trans = torch.zeros(B, 3, device=dev, dtype=dt) if trans is None else trans.to(dev, dt).expand(B, -1)
    objects = objects.to(dev, dt)
    regions = hand_regions(hand)
    rest = amano.rest_frames(hand, shape)
    omask = objects.vert_mask
    v0 = objects.verts
    centre = (v0 * omask[..., None]).sum(1) / omask.sum(1, keepdim=True).clamp_min(1)

    with torch.no_grad():
        init = hand(pose, shape, trans)
    skipped = torch.zeros(B, dtype=torch.bool, device=dev)
    if cfg.contact == "cpf":
        frac = cpf.contact(cfg.t_vc, omask).sum(1) / omask.sum(1).clamp_min(1)
        skipped = frac < cfg.min_contact_fraction

    # Parameters: wrist rotation as a left-multiplied delta, joint rotations, translation, shape,
    # and the object's rotation / translation deltas about its centroid.
    # With ``pose_pca`` the fingers are the PCA coefficients' pose, started at the projection of
    # the given one (exact for a pose in the basis's span, such as HoNet's).
    wrist_rot0 = axis_angle_to_matrix(pose[:, 0])
    d_wrist = torch.zeros(B, 3, device=dev, dtype=dt, requires_grad=True)
    if cfg.pose_pca is None:
        joints = pose[:, 1:].clone().requires_grad_(True)
        fingers = lambda: joints  # noqa: E731
    else:
        basis = PosePCA(cfg.pose_pca.components.to(dev, dt), cfg.pose_pca.mean.to(dev, dt))
        joints = basis.encode(pose[:, 1:]).clone().requires_grad_(True)
        fingers = lambda: basis.decode(joints)  # noqa: E731
    t_hand = trans.clone().requires_grad_(True)
    beta = shape.clone().requires_grad_(cfg.optimize_shape)
    d_orot = torch.zeros(B, 3, device=dev, dtype=dt, requires_grad=True)
    d_otrans = torch.zeros(B, 3, device=dev, dtype=dt, requires_grad=True)
    params, scales = [d_wrist, joints, t_hand], [1.0, 1.0, cfg.trans_lr_scale]
    if cfg.optimize_shape:
        params.append(beta)
        scales.append(1.0)
    if cfg.mode == "hand-object":
        params += [d_orot, d_otrans]
        scales += [1.0, cfg.trans_lr_scale]
    lr = torch.full((B,), cfg.lr, device=dev, dtype=dt) * (~skipped)
    opt = BatchAdam(params, scales, lr)
    plateau = BatchPlateau(lr, cfg.plateau_factor, cfg.plateau_patience, cfg.plateau_threshold, cfg.min_lr, skipped)

    tip = regions.tip_anchor
    problem = Problem(
        cfg, cpf, regions, objects,
        anchor_weight=torch.where(tip, cfg.tip_anchor_weight, cfg.other_anchor_weight).to(dt),
        tip_anchor=tip, contact_prone=contact_prone_regions(regions),
    )  # fmt: skip
    contact_energy, repulsion_energy = CONTACT_TERMS[cfg.contact], REPULSION_TERMS[cfg.repulsion]
    history = {k: [] for k in HISTORY_TERMS}
    traj = {"hand": [], "object": []}

    def current():
        finger_pose = fingers()
        joint_rot = axis_angle_to_matrix(finger_pose)
        rot = torch.cat(((axis_angle_to_matrix(d_wrist) @ wrist_rot0)[:, None], joint_rot), 1)
        full_pose = torch.cat((pose[:, :1], finger_pose), 1)  # the wrist entry is not used by L_anat
        out = hand(rot, beta, t_hand)
        R = axis_angle_to_matrix(d_orot)
        ov = ((v0 - centre[:, None]) @ R.transpose(-1, -2)) + centre[:, None] + d_otrans[:, None]
        return full_pose, out, R, ov

    every_pair = cfg.repulsion == "cpf" and cfg.rpl_neighbours is None
    searched = None  # each sample's hand and object vertices at the last search of its E_rpl pairs
    found = Neighbours()
    for it in tqdm(range(cfg.iterations), disable=not cfg.progress, desc="GeO", leave=False):
        full_pose, out, R, ov = current()
        normals = vertex_normals(ov, objects.faces, objects.face_mask)
        if it % cfg.rpl_refresh == 0:
            found = find_neighbours(problem, out.vertices, ov, normals, found.pairs)
            if not it:
                searched = (out.vertices.detach(), ov.detach())
        if every_pair and it:
            redo = drifted(searched, out.vertices, ov, omask, cfg)
            if bool(redo.any()):
                found.pairs = refresh_pairs(found.pairs, redo, out.vertices.detach(), ov.detach(), omask,
                                            cfg.rpl_search)  # fmt: skip
                now = (out.vertices.detach(), ov.detach())
                searched = tuple(torch.where(redo[:, None, None], a, b) for a, b in zip(now, searched))
        frame = Frame(out.vertices, ov, normals, found)
        terms = dict(contact=contact_energy(problem, frame), repulsion=repulsion_energy(problem, frame),
                     anat=amano.anatomical_loss(full_pose, rest),
                     offset=(out.vertices - init.vertices).square().sum(-1).mean(-1)
                     + ((ov - v0).square().sum(-1) * omask).sum(-1) / omask.sum(-1).clamp_min(1))  # fmt: skip
        total = (cfg.w_contact * terms["contact"] + cfg.w_repulsion * terms["repulsion"]
                 + cfg.w_anat * terms["anat"] + cfg.w_offset * terms["offset"])  # fmt: skip
        if not bool(torch.isfinite(total).all()):
            raise FloatingPointError(f"GeO: non-finite loss at iteration {it} for samples "
                                     f"{(~torch.isfinite(total)).nonzero()[:, 0].tolist()}")  # fmt: skip
        (total * (~skipped)).sum().backward()
        opt.step()
        plateau.step(total.detach())
        for k, v in (("total", total), *terms.items()):
            history[k].append(v.detach())
        if cfg.record_every and it % cfg.record_every == 0:
            traj["hand"].append(out.vertices.detach().cpu())
            traj["object"].append(ov.detach().cpu())

    with torch.no_grad():
        full_pose, out, R, ov = current()
        full_pose[:, 0] = matrix_to_axis_angle(axis_angle_to_matrix(d_wrist) @ wrist_rot0)
        if cfg.record_every:
            traj["hand"].append(out.vertices.cpu())
            traj["object"].append(ov.cpu())
        keep = skipped[:, None]
        return GeOResult(
            pose=torch.where(keep[..., None], pose, full_pose),
            trans=torch.where(keep, trans, t_hand),
            shape=torch.where(keep, shape, beta),
            obj_rot=torch.where(keep[..., None], torch.eye(3, device=dev, dtype=dt), R),
            obj_trans=torch.where(keep, torch.zeros_like(d_otrans), d_otrans),
            hand_verts=torch.where(keep[..., None], init.vertices, out.vertices),
            obj_verts=torch.where(keep[..., None], v0, ov),
            skipped=skipped,
            lr=lr.clone(),
            history={k: torch.stack(v) if v else torch.zeros(0, B) for k, v in history.items()},
            trajectory={k: torch.stack(v) for k, v in traj.items()} if cfg.record_every else {},
        )
