"""GeO, the Grasping Energy Optimizer (paper §5.3, Eq. 11, Supp D.1), for a whole batch at once.

GeO moves the hand (wrist rotation and translation, the 15 joint rotations, optionally the
shape) and, in ``"hand-object"`` mode, the object's 6D pose, to minimise

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
hand vertex inside the object by generalised winding number) or ``"none"`` (Table 3). Nearest
neighbours and inside tests are refreshed every ``rpl_refresh`` iterations. :data:`BASELINES` holds the
settings of the paper's ablations and :data:`GRASP_SYNTHESIS` those of Supp C.2 (attraction of
Hasson et al. + E_rpl + L_anat, hand only), used to make grasps without a known CPF.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from miho import amano
from miho import cpf as cpf_mod
from miho.anchors import PALM, TIP_REGIONS, hand_regions
from miho.checks import check_tensor
from miho.geometry import nearest_vertex, nearest_vertex_inside, winding_number
from miho.hand.model import HandModel
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
    w_repulsion: float = 2.0  # official: 0.5 (FHB), 2-6 (HO3D); 2 recovers perturbed grasps best here
    w_anat: float = 1.0  # L_anat in radians, as Eq. 11 (weight 1)
    w_offset: float = 1.0  # L_offset in m^2 (mean squared vertex displacement), as Eq. 11
    k_rpl: float = cpf_mod.K_RPL
    t_rpl: float = cpf_mod.T_RPL
    rpl_neighbours: int = 50
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
            raise ValueError("iterations must be >= 0")


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


def _anchor_weights(region: torch.Tensor, cfg: GeOConfig) -> torch.Tensor:
    tip = torch.isin(region, torch.tensor(TIP_REGIONS, device=region.device))
    return torch.where(tip, cfg.tip_anchor_weight, cfg.other_anchor_weight)


def _vanilla_energy(anchors, tip_anchor, obj_verts, obj_mask, threshold):
    """Fingertip anchors pulled to their nearest object vertex within ``threshold``: (B,)."""
    tips = anchors[:, tip_anchor]
    j = nearest_vertex(tips, obj_verts, obj_mask)
    near = (tips - torch.gather(obj_verts, 1, j[..., None].expand(-1, -1, 3))).norm(dim=-1)
    return 0.5 * torch.where(near < threshold, near, torch.zeros_like(near)).square().sum(-1)


def _obman_energy(hand_verts, obj_verts, nearest, region_masks, cfg, inside):
    """Hasson et al.'s attraction (contact-prone regions) and repulsion (``inside`` (B, V) hand
    vertices), each (B,).

    Distances are to the nearest object vertex, ``nearest`` (B, V) (searched without gradient
    by :func:`miho.geometry.nearest_vertex`; the gradient flows through the chosen pair, as it would through a min).
    """
    j = nearest
    oj = torch.gather(obj_verts, 1, j[..., None].expand(-1, -1, 3))
    near = (hand_verts - oj).norm(dim=-1)
    attraction = hand_verts.new_zeros(hand_verts.shape[0])
    for mask in region_masks:
        dr = near[:, mask].min(-1).values
        on = dr < cfg.obman_threshold
        attraction = attraction + torch.where(on, cfg.obman_alpha * torch.tanh(dr / cfg.obman_alpha), 0.0)
    depth = torch.where(inside, near, torch.zeros_like(near))
    return attraction, (cfg.obman_r * torch.tanh(depth / cfg.obman_r)).sum(-1)


def _inside(hand_verts, objects: Meshes, obj_verts):
    """(B, V) bool: hand vertices inside their object, by generalised winding number (robust to
    fingers that pass through a thin wall, unlike a nearest-normal test), without gradient."""
    with torch.no_grad():
        tris = torch.gather(obj_verts, 1, objects.faces.reshape(objects.batch, -1, 1).expand(-1, -1, 3))
        w = winding_number(hand_verts, tris.reshape(objects.batch, -1, 3, 3), objects.face_mask)
    return w.abs() > 0.5


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
        hand: the hand model (its device is used). pose: (B, 16, 3) initial pose.
        objects: the B objects, posed in the same frame as the hand.
        cpf: the contact field on the objects' vertices (needed for ``contact="cpf"``).
        shape: (B, S) or None; trans: (B, 3) or None.
        config: a :class:`GeOConfig`; ``overrides`` replace single fields of it.
    """
    cfg = config or GeOConfig()
    if overrides:
        cfg = GeOConfig(**{**cfg.__dict__, **overrides})
    B = pose.shape[0]
    check_tensor("pose", pose, (B, 16, 3))
    if objects.batch != B:
        raise ValueError(f"objects has batch {objects.batch}, pose has batch {B}")
    check_tensor("object vertices", objects.verts, (B, None, 3))
    if cfg.contact == "cpf" and cpf is None:
        raise ValueError("contact='cpf' needs a CPF (cpf=...)")
    dev, dt = hand.device, hand.dtype
    pose = pose.to(dev, dt)
    shape = torch.zeros(B, hand.num_shape, device=dev, dtype=dt) if shape is None else shape.to(dev, dt).expand(B, -1)
    trans = torch.zeros(B, 3, device=dev, dtype=dt) if trans is None else trans.to(dev, dt).expand(B, -1)
    check_tensor("shape", shape, (B, hand.num_shape))
    check_tensor("trans", trans, (B, 3))
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
    wrist_rot0 = axis_angle_to_matrix(pose[:, 0])
    d_wrist = torch.zeros(B, 3, device=dev, dtype=dt, requires_grad=True)
    joints = pose[:, 1:].clone().requires_grad_(True)
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

    aw = _anchor_weights(regions.anchor_region, cfg).to(dt)
    tip_anchor = torch.isin(regions.anchor_region, torch.tensor(TIP_REGIONS, device=dev))
    obman_regions = [(regions.labels == r) & regions.palm_side for r in (*TIP_REGIONS, PALM)]
    history = {k: [] for k in ("total", "contact", "repulsion", "anat", "offset")}
    traj = {"hand": [], "object": []}

    def current():
        joint_rot = axis_angle_to_matrix(joints)
        rot = torch.cat(((axis_angle_to_matrix(d_wrist) @ wrist_rot0)[:, None], joint_rot), 1)
        full_pose = torch.cat((pose[:, :1], joints), 1)  # the wrist entry is not used by L_anat
        out = hand(rot, beta, t_hand)
        R = axis_angle_to_matrix(d_orot)
        ov = ((v0 - centre[:, None]) @ R.transpose(-1, -2)) + centre[:, None] + d_otrans[:, None]
        return full_pose, out, R, ov

    neighbours = {}

    def losses(full_pose, out, ov, it):
        normals = vertex_normals(ov, objects.faces, objects.face_mask)
        if cfg.contact == "cpf":
            contact = cpf_mod.attraction_energy(
                regions.anchors(out.vertices), ov, cpf, regions.anchor_region, omask, cfg.t_vc, aw
            )
        elif cfg.contact == "vanilla":
            contact = _vanilla_energy(regions.anchors(out.vertices), tip_anchor, ov, omask, cfg.vanilla_threshold)
        obman = None
        if "obman" in (cfg.contact, cfg.repulsion):
            if it % max(cfg.rpl_refresh, 1) == 0 or "inside" not in neighbours:
                with torch.no_grad():
                    if cfg.obman_inside == "normal":
                        inside, nearest = nearest_vertex_inside(out.vertices, ov, normals, omask)
                    else:
                        inside, nearest = _inside(out.vertices, objects, ov), nearest_vertex(out.vertices, ov, omask)
                neighbours["inside"], neighbours["nearest"] = inside, nearest
            obman = _obman_energy(out.vertices, ov, neighbours["nearest"], obman_regions, cfg, neighbours["inside"])
        if cfg.contact == "obman":
            contact = obman[0]
        rpl = torch.zeros_like(contact)
        if cfg.repulsion == "obman":
            rpl = obman[1]
        elif cfg.repulsion == "cpf":
            if it % max(cfg.rpl_refresh, 1) == 0 or "index" not in neighbours:
                neighbours["index"] = cpf_mod.nearest_hand_vertices(out.vertices, ov, cfg.rpl_neighbours)[0]
            rpl = cpf_mod.repulsion_energy(
                out.vertices, ov, normals, omask, cfg.k_rpl, cfg.t_rpl, neighbour_index=neighbours["index"]
            )
        anat = amano.anatomical_loss(full_pose, rest)
        off_h = (out.vertices - init.vertices).square().sum(-1).mean(-1)
        off_o = ((ov - v0).square().sum(-1) * omask).sum(-1) / omask.sum(-1).clamp_min(1)
        offset = off_h + off_o
        total = cfg.w_contact * contact + cfg.w_repulsion * rpl + cfg.w_anat * anat + cfg.w_offset * offset
        return total, dict(contact=contact, repulsion=rpl, anat=anat, offset=offset)

    for it in tqdm(range(cfg.iterations), disable=not cfg.progress, desc="GeO", leave=False):
        full_pose, out, R, ov = current()
        total, terms = losses(full_pose, out, ov, it)
        if not bool(torch.isfinite(total).all()):
            raise FloatingPointError(f"GeO: non-finite loss at iteration {it} for samples "
                                     f"{(~torch.isfinite(total)).nonzero()[:, 0].tolist()}")  # fmt: skip
        (total * (~skipped)).sum().backward()
        opt.step()
        plateau.step(total.detach())
        history["total"].append(total.detach())
        for k, v in terms.items():
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
