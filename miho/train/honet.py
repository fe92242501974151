"""Training and evaluating HoNet (Supp D.1): the task for :func:`miho.train.trainer.train`, its
figures, and its predictions as coarse poses for the later stages.

HoNet reads SynthHO images (:class:`~miho.train.picr_data.PiCRData`, the same in-memory splits as
PiCR) and is supervised by the true hand joints and object vertices in the camera frame
(:func:`miho.train.losses.honet_loss`). Images are augmented in colour, scale and shift, which
move the camera with them (``P = A K``), but not rotated: an image turned in its plane would ask
the hand's 3D rotation to turn with it, which HoNet's rotation heads do not read from ``P``.

Trained from scratch with the official terms alone (joints, object vertices and the weak
regularisers), HoNet never learns the wrist's rotation here: while the rotation is unknown, the
least-squares answer for the joints is a hand curled up and shrunk at the right place (found in
the first run: wrist predictions near the identity for every image, shape at its bound, the
root-relative joint error flat at 119 mm over 5 epochs). The committed model therefore adds the
parameter terms of :class:`~miho.train.losses.HoNetLossWeights` (``rot``, ``pca_fit``,
``shape_fit``), which SynthHO's known hand parameters allow.

Figures (:func:`honet_figures`, millimetres, averaged over samples): hand MPJPE (21 joints) and
MPVPE (every vertex), the same after aligning the wrist joints (root-relative MPJPE: the pose
without the depth error), and the object's MPVPE.
"""

from __future__ import annotations

import dataclasses

import torch
from tqdm.auto import tqdm

from miho.anchors import hand_regions
from miho.geo import GeOConfig, obman_losses
from miho.hand import load_hand
from miho.hand.model import HandModel
from miho.mesh import Meshes
from miho.nets.honet import HoNet
from miho.rotations import axis_angle_to_matrix
from miho.train.losses import HoNetLossWeights, honet_loss
from miho.train.picr_data import AUGMENT_DRAWS, Augment, PiCRData, augment, build_picr_data, check_image_size

__all__ = ["CHECK_SUBSET", "HONET_AUGMENT", "OBMAN_CONTACT", "HoNetTask", "check_figures", "evaluate_honet",
           "export_honet", "honet_figures", "predict_honet", "train_honet"]  # fmt: skip

#: colour, scale and shift; no in-plane rotation (see the module docstring)
HONET_AUGMENT = Augment(rotation=0.0)
#: the :class:`~miho.geo.GeOConfig` fields the ObMan* contact terms read
CONTACT_FIELDS = ("obman_threshold", "obman_alpha", "obman_r", "obman_inside")
#: ObMan*'s contact terms in training: GeO's thresholds, with the nearest-vertex inside test (a
#: step of 16 samples costs 0.4 s with it against 2.5 s with winding numbers on 2 CPU cores)
OBMAN_CONTACT = GeOConfig(obman_inside="normal")


def _core(model: torch.nn.Module) -> HoNet:
    """The HoNet inside a DistributedDataParallel or ``torch.compile`` wrapper."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


class HoNetTask:
    """HoNet as a :class:`miho.train.trainer.Task`.

    Args:
        model: a :class:`~miho.nets.honet.HoNet`.
        train_data, val_data: :class:`PiCRData` at the model's image size.
        hand: the hand model the data was made with (default ``load_hand()``).
        augment: image augmentation (None: off).
        weights: loss weights (default the official ones; with ``attraction`` or ``repulsion``,
            ObMan*).
        contact_config: the contact terms' thresholds and inside test (:func:`miho.geo.obman_losses`;
            default :data:`OBMAN_CONTACT`).
        init: where the starting weights came from (``{"path", "sha256"}``), for the checkpoints'
            metadata (fine-tuning).
    """

    def __init__(self, model: HoNet, train_data: PiCRData, val_data: PiCRData | None = None,
                 hand: HandModel | None = None, augment: Augment | None = HONET_AUGMENT,
                 weights: HoNetLossWeights | None = None, contact_config: GeOConfig | None = None,
                 init: dict | None = None) -> None:  # fmt: skip
        check_image_size(model.config, train_data=train_data, val_data=val_data)
        self.model, self.data, self.val_data = model, train_data, val_data
        self.hand = hand if hand is not None else load_hand()
        self.augment, self.weights = augment, weights or HoNetLossWeights()
        self.contact_config, self.regions = contact_config or OBMAN_CONTACT, None
        if self.weights.contact:
            self.regions = hand_regions(self.hand)
        self.meta = {
            "model": "honet", "config": model.config.to_dict(), "data": train_data.info,
            "val_data": val_data.info if val_data is not None else None,
            "augment": dataclasses.asdict(augment) if augment else None, "weights": dataclasses.asdict(self.weights),
        }  # fmt: skip
        if self.weights.contact:
            self.meta["contact_config"] = {k: getattr(self.contact_config, k) for k in CONTACT_FIELDS}
        if init is not None:
            self.meta["init"] = init

    def num_samples(self) -> int:
        return len(self.data)

    def loss(self, model, idx: torch.Tensor, part: slice, generator: torch.Generator, device) -> tuple:
        draws = torch.rand(len(idx), AUGMENT_DRAWS, generator=generator)
        b = self.data.batch(idx[part], device)
        image, P = b["image"], b["K"]
        if self.augment is not None:
            image, P = augment(image, P, draws[part].to(device), self.augment)
        hand = self.hand.to(device)
        out = model(image, P)
        net = _core(model)
        with torch.no_grad():
            joints_true = hand(b["hand_pose"], b["hand_shape"], b["hand_trans"]).joints21
        posed = net.hand(hand, out)
        joints = posed.joints21
        truth = {"rot": (out.hand_rot, axis_angle_to_matrix(b["hand_pose"][:, 0])),
                 "pca": net.pose_pca.encode(b["hand_pose"][:, 1:]), "shape": b["hand_shape"]}  # fmt: skip
        obj_verts = net.object_verts(out, b["obj_canonical"])
        contact = None
        if self.weights.contact:
            objects = Meshes(obj_verts, b["obj_faces"], b["obj_mask"], b["obj_face_mask"])
            contact = obman_losses(hand, posed.vertices, objects, self.contact_config, self.regions)
        total, terms = honet_loss(joints, joints_true, obj_verts, b["obj_verts"], b["obj_mask"], out.hand_shape,
                                  out.hand_pca, self.weights, truth, contact)  # fmt: skip
        return total, {k: float(v.detach()) for k, v in terms.items()}

    def validate(self, model, device) -> dict:
        if self.val_data is None:
            return {"score": 0.0}
        fig = honet_figures(predict_honet(_core(model), self.val_data, self.hand, device=device), self.val_data,
                            self.hand)  # fmt: skip
        return {"score": -0.5 * (fig["hand_mpjpe"] + fig["obj_mpvpe"]), **fig}


@torch.no_grad()
def predict_honet(model: HoNet, data: PiCRData, hand: HandModel | None = None, batch_size: int = 32, device="cpu",
                  idx=None) -> dict:  # fmt: skip
    """HoNet's coarse hand and object for samples of ``data`` (all, or ``idx``), as (n, ...) CPU
    tensors: ``hand_pose`` (n, 16, 3), ``hand_shape``, ``hand_trans`` (the hand model's
    parameters), ``obj_rot`` (n, 3, 3) and ``obj_trans`` (n, 3) (canonical -> camera)."""
    hand = (hand if hand is not None else load_hand()).to(device)
    was = model.training
    model.eval()
    idx = torch.arange(len(data)) if idx is None else torch.as_tensor(idx)
    rows: dict[str, list] = {k: [] for k in ("hand_pose", "hand_shape", "hand_trans", "obj_rot", "obj_trans")}
    try:
        for chunk in idx.split(batch_size):
            b = data.batch(chunk, device)
            out = model(b["image"], b["K"])
            pose, shape, trans = model.hand_params(hand, out)
            for k, v in zip(rows, (pose, shape, trans, out.obj_rot, out.obj_trans)):
                rows[k].append(v.float().cpu())
    finally:
        model.train(was)
    return {k: torch.cat(v) for k, v in rows.items()}


@torch.no_grad()
def honet_figures(pred: dict, data: PiCRData, hand: HandModel | None = None, idx=None,
                  batch_size: int = 64) -> dict:  # fmt: skip
    """Errors (mm, means over samples) of :func:`predict_honet`'s ``pred`` against the truth of
    the same samples of ``data`` (all, or ``idx``): ``hand_mpjpe`` (21 joints), ``hand_mpvpe``,
    ``hand_mpjpe_rr`` (root-relative: wrist joints aligned), ``obj_mpvpe``, and ``samples``."""
    hand = hand if hand is not None else load_hand()
    idx = torch.arange(len(data)) if idx is None else torch.as_tensor(idx)
    sums = {"hand_mpjpe": 0.0, "hand_mpvpe": 0.0, "hand_mpjpe_rr": 0.0, "obj_mpvpe": 0.0}
    for rows in torch.arange(len(idx)).split(batch_size):
        b = data.batch(idx[rows])
        p = {k: v[rows].to(hand.dtype) for k, v in pred.items()}
        est = hand(p["hand_pose"], p["hand_shape"], p["hand_trans"])
        true = hand(b["hand_pose"].to(hand.dtype), b["hand_shape"].to(hand.dtype), b["hand_trans"].to(hand.dtype))
        dj = est.joints21 - true.joints21
        sums["hand_mpjpe"] += float(dj.norm(dim=-1).mean(1).sum())
        sums["hand_mpvpe"] += float((est.vertices - true.vertices).norm(dim=-1).mean(1).sum())
        sums["hand_mpjpe_rr"] += float((dj - dj[:, :1]).norm(dim=-1).mean(1).sum())
        est_obj = b["obj_canonical"] @ p["obj_rot"].float().transpose(1, 2) + p["obj_trans"].float()[:, None]
        err = (est_obj - b["obj_verts"]).norm(dim=-1) * b["obj_mask"]
        sums["obj_mpvpe"] += float((err.sum(1) / b["obj_mask"].sum(1)).sum())
    n = max(len(idx), 1)
    return {**{k: 1000 * v / n for k, v in sums.items()}, "samples": len(idx)}


def train_honet(config: str = "small", settings=None, run_dir="runs/honet-small", resume: bool = False,
                views: int = 8, val_views: int = 2, train_grasps: int | None = None, val_grasps: int | None = None,
                augment_images: bool = True, device: str = "cpu", progress: bool = True, workers: int = 2,
                weights: HoNetLossWeights | None = None, init=None) -> tuple[HoNet, dict]:  # fmt: skip
    """HoNet's training on SynthHO (what ``miho train honet`` runs): ``train`` at ``views`` views a
    grasp, validated on ``val`` at ``val_views``; returns the model (the last epoch's weights) and
    the history. ``train_grasps`` / ``val_grasps`` cap the grasps (small runs); ``weights``: the
    loss weights (default the official ones; ObMan* with the contact terms); ``init``: weights to
    start from (fine-tuning, e.g. ObMan* from the committed HoNet) instead of a fresh network."""
    from miho.nets.honet import build_honet
    from miho.train.checkpoints import init_weights
    from miho.train.trainer import TrainSettings, train

    settings = settings or TrainSettings(lr=5e-5)
    torch.manual_seed(settings.seed)  # the initial weights
    model = build_honet(config)
    origin = init_weights(model, init) if init is not None else None
    size = model.config.image_size
    train_data = build_picr_data("train", views, size, grasps=train_grasps, workers=workers, progress=progress)
    val_data = build_picr_data("val", val_views, size, grasps=val_grasps, workers=workers, progress=progress)
    task = HoNetTask(model, train_data, val_data, augment=HONET_AUGMENT if augment_images else None, weights=weights,
                     init=origin)  # fmt: skip
    history = train(task, settings, run_dir, resume=resume, device=device, progress=progress)
    return model, history


def evaluate_honet(model: HoNet, splits=("val", "test-seen", "test"), views: int = 2, device="cpu",
                   progress: bool = True, grasps: int | None = None) -> dict:  # fmt: skip
    """:func:`honet_figures` of ``model`` on each split at ``views`` views a grasp: ``{split: {...}}``."""
    hand = load_hand()
    out = {}
    for split in tqdm(splits, desc="HoNet figures", disable=not progress):
        data = build_picr_data(split, views=views, size=model.config.image_size, grasps=grasps, progress=progress)
        out[split] = honet_figures(predict_honet(model, data, hand, device=device), data, hand)
    return out


#: the fixed subset the card's ``check`` figures are measured on (re-measured by the tests)
CHECK_SUBSET = {"split": "val", "views": 1, "grasps": 24}


def check_figures(model: HoNet) -> dict:
    """HoNet's figures on :data:`CHECK_SUBSET`: what a test re-measures to check committed weights
    against their card."""
    s = CHECK_SUBSET
    data = build_picr_data(s["split"], views=s["views"], size=model.config.image_size, grasps=s["grasps"],
                           progress=False)  # fmt: skip
    hand = load_hand()
    return honet_figures(predict_honet(model, data, hand), data, hand)


def export_honet(run_dir, out, checkpoint: str = "best.pt", views: int = 2, device="cpu", progress: bool = True,
                 note: str = "") -> dict:  # fmt: skip
    """Write a trained run's weights (fp16) to ``out`` and its model card (``out`` with ``.json``):
    configuration, data, settings, epochs, wall time, machine, commit, history, and the exported
    weights' figures on ``val``, ``test-seen`` and ``test`` (``views`` a grasp) and on
    :data:`CHECK_SUBSET`; ``note``: how the run went. Returns the card."""
    from pathlib import Path

    from miho.nets.honet import HoNetConfig, load_honet
    from miho.train.checkpoints import export_weights, load_checkpoint, run_card, write_card

    state = load_checkpoint(Path(run_dir) / checkpoint)
    config = state["meta"]["task"]["config"]
    model = HoNet(HoNetConfig.from_dict(config))
    model.load_state_dict(state["model"])
    out = Path(out)
    export_weights(model, out, {"config": config})
    weights = state["meta"]["task"]["weights"]
    what = "HoNet (MeshRegNet of Hasson et al., CVPR 2020, as CPF §5.1 uses it)"
    if weights.get("attraction") or weights.get("repulsion"):
        what = ("ObMan* (CPF Table 1): HoNet trained with the attraction and repulsion losses of Hasson et al., "
                "CVPR 2019")  # fmt: skip
    card = {"model": what, "units": "mm", **run_card(state, out, checkpoint, note)}
    write_card(out, card)
    exported = load_honet(path=out)
    card["figures"] = evaluate_honet(exported, views=views, device=device, progress=progress)
    card["figures_views"] = views
    card["check"] = check_figures(exported)
    card["check_subset"] = CHECK_SUBSET
    write_card(out, card)
    return card
