"""Training and evaluating PiCR (Supp D.1, stage 1): the task for :func:`miho.train.trainer.train`,
the field figures, and the distance heuristic they are compared with.

Stage 1 reads the image and the ground-truth object disturbed by
:class:`~miho.data.synthho.Disturbance` (pi/24, N(10, 5) mm), drawn afresh every step; evaluation
uses each sample's fixed seeded disturbance (SynthHO's), so figures are repeatable.

Stage 2 (Supp D.1) fine-tunes a stage-1 model on HoNet's predicted objects with HoNet frozen:
``coarse`` holds :func:`miho.train.honet.predict_honet`'s poses for every training sample (and
``val_coarse`` for validation); a hand-aware model then also reads HoNet's hand, as it does in
:func:`miho.pipeline.estimate`.

Figures (:func:`field_figures`), micro-averaged over every real object vertex of a split:

* VC precision, recall and F1 at a threshold (the paper's t_vc = 0.8) and the precision-recall
  curve over thresholds, with the best F1 and its threshold;
* CR accuracy: the predicted region equals the true one, on true-contact vertices;
* AE mean absolute error on true-contact vertices.
"""

from __future__ import annotations

import dataclasses

import torch
from tqdm.auto import tqdm

from miho import cpf
from miho.anchors import hand_regions
from miho.data.synthho import Disturbance
from miho.nets.hand_features import CoarseHand
from miho.nets.picr import ASSETS, PiCR
from miho.train.losses import PiCRLossWeights, picr_loss
from miho.train.picr_data import (
    AUGMENT_DRAWS,
    Augment,
    PiCRData,
    augment,
    build_picr_data,
    check_image_size,
    disturb_hand_params,
    disturb_objects,
    scale_hand_disturbance,
)

__all__ = ["CHECK_SUBSET", "HAND_SCALES", "HAND_STUDY_FILE", "THRESHOLDS", "PiCRTask", "check_figures",
           "coarse_batch", "coarse_hand_params", "evaluate_picr", "export_picr", "f1_at", "field_figures",
           "flatten_fields", "hand_study", "hand_study_markdown", "heuristic_field", "heuristic_fields",
           "load_hand_study", "predict_batch", "predict_fields", "subsample_vertices", "train_picr"]  # fmt: skip

DEFAULT_AUGMENT = Augment()

#: thresholds of the precision-recall curve
THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))


def subsample_vertices(mask: torch.Tensor, k: int, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``k`` real vertices a sample, chosen by the largest ``keys`` (b, N) uniform draws.

    Returns (b, k') indices (k' = min(k, N)) and their (b, k') mask (False where a sample has fewer
    than k' real vertices)."""
    k = min(k, mask.shape[1])
    idx = torch.where(mask, keys, torch.full_like(keys, -1.0)).topk(k, dim=1).indices
    return idx, mask.gather(1, idx)


def _take(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    if x.dim() == 3:
        return x.gather(1, idx[..., None].expand(-1, -1, x.shape[-1]))
    return x.gather(1, idx)


class PiCRTask:
    """PiCR stage 1 as a :class:`miho.train.trainer.Task`.

    Args:
        model: a :class:`~miho.nets.picr.PiCR`.
        train_data, val_data: :class:`PiCRData` at the model's image size.
        max_points: real vertices a sample keeps in training (random subset each step); all in
            evaluation.
        disturbance: the coarse object's pose noise in training (default the official jitter).
        augment: image augmentation (None: off).
        weights: loss weights, alpha and gamma (default the official ones).
        hand_max_scale: stage 1, a hand-aware model's coarse hand: the true hand disturbed by
            ``disturbance`` scaled by ``hand_max_scale`` u^2 (:func:`disturb_hand_params`).
        coarse: stage 2: HoNet's coarse object and hand for every sample of ``train_data``
            (:func:`miho.train.honet.predict_honet`), used instead of the disturbances.
        val_coarse: the same for ``val_data`` (validation on HoNet's poses).
        origin: where the starting weights and HoNet came from (``{"init": ..., "honet": ...}``,
            :func:`~miho.train.checkpoints.file_origin`), for the checkpoints' metadata.
    """

    def __init__(self, model: PiCR, train_data: PiCRData, val_data: PiCRData | None = None, max_points: int = 800,
                 disturbance: Disturbance | None = None, augment: Augment | None = DEFAULT_AUGMENT,
                 weights: PiCRLossWeights | None = None, hand_max_scale: float = 4.0,
                 coarse: dict | None = None, val_coarse: dict | None = None,
                 origin: dict | None = None) -> None:  # fmt: skip
        check_image_size(model.config, train_data=train_data, val_data=val_data)
        disturbance, weights = disturbance or Disturbance(), weights or PiCRLossWeights()
        self.model, self.data, self.val_data = model, train_data, val_data
        self.max_points, self.disturbance, self.augment, self.weights = max_points, disturbance, augment, weights
        for name, poses, d in (("coarse", coarse, train_data), ("val_coarse", val_coarse, val_data)):
            if poses is not None and (d is None or any(len(v) != len(d) for v in poses.values())):
                raise ValueError(f"{name} must hold one coarse pose per sample of its data ({len(d or ())})")
        self.coarse, self.val_coarse, self.hand_max_scale = coarse, val_coarse, hand_max_scale
        self.hand = CoarseHand() if model.config.hand_aware else None
        self.meta = {
            "model": "picr", "config": model.config.to_dict(), "data": train_data.info,
            "val_data": val_data.info if val_data is not None else None, "max_points": max_points,
            "disturbance": dataclasses.asdict(disturbance), "augment": dataclasses.asdict(augment) if augment else None,
            "weights": dataclasses.asdict(weights), "stage": 1 if coarse is None else 2, **(origin or {}),
        }  # fmt: skip
        if self.hand is not None:
            self.meta["hand_max_scale"] = hand_max_scale

    def num_samples(self) -> int:
        return len(self.data)

    def loss(self, model, idx: torch.Tensor, part: slice, generator: torch.Generator, device) -> tuple:
        data, coarse = self.data, self.coarse
        if coarse is None:
            rot, trans = disturb_objects(data.obj_rot[idx].double(), data.obj_trans[idx].double(), generator,
                                         self.disturbance)  # fmt: skip
        else:
            rot, trans = coarse["obj_rot"][idx], coarse["obj_trans"][idx]
        n = int(data.obj_count[data.obj_of_grasp[data.grasp[idx]]].max())
        keys = torch.rand(len(idx), n, generator=generator)
        draws = torch.rand(len(idx), AUGMENT_DRAWS, generator=generator)
        if self.hand is not None:
            if coarse is None:
                hp, ht = disturb_hand_params(data.hand_pose[idx], data.hand_trans[idx], generator, self.disturbance,
                                             self.hand_max_scale)  # fmt: skip
                hs = data.hand_shape[idx]
            else:
                hp, hs, ht = coarse["hand_pose"][idx], coarse["hand_shape"][idx], coarse["hand_trans"][idx]
        b = data.batch(idx[part], device, rot=rot[part], trans=trans[part])
        image, P = b["image"], b["K"]
        if self.augment is not None:
            image, P = augment(image, P, draws[part].to(device), self.augment)
        keep, mask = subsample_vertices(b["obj_mask"], self.max_points, keys[part, : b["obj_mask"].shape[1]].to(device))
        verts = _take(b["obj_verts"], keep)
        feats = None
        if self.hand is not None:
            feats = self.hand.features(hp[part].to(device), hs[part].to(device), ht[part].to(device), verts,
                                       _take(b["obj_normals"], keep), mask)  # fmt: skip
        out = model(image, verts, P, mask, feats)
        total, terms = picr_loss(out, _take(b["vc"], keep), _take(b["cr"], keep), _take(b["ae"], keep), self.weights)
        return total, {k: float(v.detach()) for k, v in terms.items()}

    def validate(self, model, device) -> dict:
        if self.val_data is None:
            return {"score": 0.0}
        fig = field_figures(predict_fields(model, self.val_data, device=device, coarse=self.val_coarse))
        return {"score": fig["best_f1"], "f1": fig["f1"], "best_threshold": fig["best_threshold"],
                "cr_accuracy": fig["cr_accuracy"], "ae_mae": fig["ae_mae"]}  # fmt: skip


def coarse_hand_params(b: dict, hand_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch's coarse hand (pose, translation) at ``hand_scale`` times its fixed seeded disturbance
    (:func:`scale_hand_disturbance`: 0 the true hand, 1 SynthHO's coarse hand)."""
    if hand_scale == 0:
        return b["hand_pose"], b["hand_trans"]
    if hand_scale == 1:
        return b["hand_pose_noisy"], b["hand_trans_noisy"]
    return scale_hand_disturbance(b["hand_pose"], b["hand_trans"], b["hand_pose_noisy"], b["hand_trans_noisy"],
                                  hand_scale)  # fmt: skip


def predict_batch(model: PiCR, b: dict, hand_scale: float = 1.0, hand: CoarseHand | None = None,
                  coarse_hand: tuple | None = None) -> cpf.CPF:  # fmt: skip
    """``model``'s field on a :meth:`~miho.train.picr_data.PiCRData.batch` (its objects at the pose the
    batch was made with); a hand-aware model also reads the coarse hand: ``coarse_hand`` (pose,
    shape, trans) where given (HoNet's), else the true hand at ``hand_scale`` times each sample's
    fixed disturbance (:func:`coarse_hand_params`); ``hand``: the
    :class:`~miho.nets.hand_features.CoarseHand` to use, default a new one."""
    feats = None
    if model.config.hand_aware:
        hand = hand if hand is not None else CoarseHand()
        if coarse_hand is None:
            (pose, trans), shape = coarse_hand_params(b, hand_scale), b["hand_shape"]
        else:
            pose, shape, trans = (t.to(b["image"].device) for t in coarse_hand)
        feats = hand.features(pose, shape, trans, b["obj_verts"], b["obj_normals"], b["obj_mask"])
    return model.predict(b["image"], b["obj_verts"], b["K"], b["obj_mask"], feats)


@torch.no_grad()
def heuristic_field(hand, regions, b: dict, hand_scale: float = 1.0, coarse_hand: tuple | None = None) -> cpf.CPF:
    """The distance heuristic's field on a :meth:`~miho.train.picr_data.PiCRData.batch`: Eq. 4
    (:func:`miho.cpf.annotate`) on the coarse hand (``coarse_hand`` (pose, shape, trans) where
    given, else the true one at ``hand_scale`` times each sample's fixed disturbance) and the
    batch's objects. ``hand``: the hand model, ``regions`` its :func:`~miho.anchors.hand_regions`."""
    if coarse_hand is None:
        (pose, trans), shape = coarse_hand_params(b, hand_scale), b["hand_shape"]
    else:
        pose, shape, trans = (t.to(b["image"].device) for t in coarse_hand)
    return cpf.annotate(hand(pose, shape, trans).vertices, b["obj_verts"], regions, b["obj_mask"])


def coarse_batch(data: PiCRData, chunk: torch.Tensor, device, pose: str, coarse: dict | None) -> tuple[dict, tuple]:
    """Samples ``chunk`` of ``data`` with their objects at ``coarse``'s poses (HoNet's, indexed by
    sample) and its hand as (pose, shape, trans), or, without ``coarse``, at ``pose`` ("noisy" or
    "true") and None."""
    if coarse is None:
        return data.batch(chunk, device, pose=pose), None
    b = data.batch(chunk, device, rot=coarse["obj_rot"][chunk], trans=coarse["obj_trans"][chunk])
    return b, tuple(coarse[k][chunk] for k in ("hand_pose", "hand_shape", "hand_trans"))


@torch.no_grad()
def predict_fields(model: PiCR, data: PiCRData, pose: str = "noisy", batch_size: int = 16, device="cpu",
                   idx=None, hand_scale: float = 1.0, hand: CoarseHand | None = None,
                   coarse: dict | None = None) -> dict:  # fmt: skip
    """PiCR's field on samples of ``data`` (all, or ``idx``) under their fixed coarse (``"noisy"``)
    or true object pose, every real vertex, flattened: ``vc`` probabilities, ``cr`` ids, ``ae``,
    the ground truth ``vc_true``, ``cr_true``, ``ae_true``, and ``sample`` (the sample of each vertex).
    A hand-aware model reads the coarse hand at ``hand_scale`` times each sample's fixed disturbance
    (:func:`coarse_hand_params`; ``hand``: the :class:`~miho.nets.hand_features.CoarseHand` to use).
    ``coarse``: HoNet's poses for every sample of ``data`` (:func:`coarse_batch`), instead of both."""
    was = model.training
    model.eval()
    idx = torch.arange(len(data)) if idx is None else torch.as_tensor(idx)
    if model.config.hand_aware and hand is None:
        hand = CoarseHand()
    rows: dict[str, list] = {k: [] for k in ("vc", "cr", "ae", "vc_true", "cr_true", "ae_true", "sample")}
    try:
        for start in range(0, len(idx), batch_size):
            chunk = idx[start : start + batch_size]
            b, coarse_hand = coarse_batch(data, chunk, device, pose, coarse)
            _collect(rows, predict_batch(model, b, hand_scale, hand, coarse_hand), b, chunk)
    finally:
        model.train(was)
    return {k: torch.cat(v) for k, v in rows.items()}


def flatten_fields(field: cpf.CPF, b: dict) -> dict:
    """A predicted field on a batch and the batch's true one, over its real vertices (on the CPU):
    the keys ``vc``, ``cr``, ``ae``, ``vc_true``, ``cr_true``, ``ae_true`` that :func:`field_figures`
    reads. ``b``: a :meth:`~miho.train.picr_data.PiCRData.batch`."""
    m = b["obj_mask"]
    return {"vc": field.vc[m].cpu(), "cr": field.cr[m].cpu(), "ae": field.ae[m].cpu(), "vc_true": b["vc"][m].cpu(),
            "cr_true": b["cr"][m].cpu(), "ae_true": b["ae"][m].cpu()}  # fmt: skip


def _collect(rows: dict, field: cpf.CPF, b: dict, chunk: torch.Tensor) -> None:
    for k, v in flatten_fields(field, b).items():
        rows[k].append(v)
    m = b["obj_mask"].cpu()
    rows["sample"].append(chunk[:, None].expand_as(m)[m])


@torch.no_grad()
def heuristic_fields(data: PiCRData, hand=None, pose: str = "noisy", batch_size: int = 32, device="cpu",
                     idx=None, hand_scale: float | None = None, coarse: dict | None = None) -> dict:  # fmt: skip
    """The distance heuristic, a field that needs no learning: Eq. 4 applied to the coarse hand and
    object (contact within 20 mm of the coarse hand's palm side, the region and elasticity it
    gives); the same keys as :func:`predict_fields`. The hand is at ``hand_scale`` times each
    sample's fixed disturbance (default 1 with the ``"noisy"`` object pose, 0 with the true one), or
    HoNet's where ``coarse`` holds its poses (:func:`coarse_batch`)."""
    from miho.hand import load_hand

    hand = (hand or load_hand()).to(device)
    regions = hand_regions(hand)
    idx = torch.arange(len(data)) if idx is None else torch.as_tensor(idx)
    scale = hand_scale if hand_scale is not None else (1.0 if pose == "noisy" else 0.0)
    rows: dict[str, list] = {k: [] for k in ("vc", "cr", "ae", "vc_true", "cr_true", "ae_true", "sample")}
    for start in range(0, len(idx), batch_size):
        chunk = idx[start : start + batch_size]
        b, coarse_hand = coarse_batch(data, chunk, device, pose, coarse)
        _collect(rows, heuristic_field(hand, regions, b, scale, coarse_hand), b, chunk)
    return {k: torch.cat(v) for k, v in rows.items()}


def field_figures(f: dict, t_vc: float = cpf.T_VC) -> dict:
    """VC precision / recall / F1 at ``t_vc``, the precision-recall curve (:data:`THRESHOLDS`), the best
    F1 and its threshold, CR accuracy and AE mean absolute error on true-contact vertices, of the
    flattened fields of :func:`predict_fields` or :func:`heuristic_fields`."""
    true = f["vc_true"] > 0.5

    def prf(t: float) -> tuple[float, float, float]:
        pred = f["vc"] > t
        tp = float((pred & true).sum())
        p = tp / max(float(pred.sum()), 1.0)
        r = tp / max(float(true.sum()), 1.0)
        return p, r, 2 * p * r / max(p + r, 1e-12)

    curve = [(t, *prf(t)) for t in THRESHOLDS]
    best = max(curve, key=lambda row: row[3])
    p, r, f1 = prf(t_vc)
    n_true = max(int(true.sum()), 1)
    return {
        "threshold": t_vc, "precision": p, "recall": r, "f1": f1,
        "best_f1": best[3], "best_threshold": best[0], "curve": curve,
        "cr_accuracy": float((f["cr"][true] == f["cr_true"][true]).sum()) / n_true,
        "ae_mae": float((f["ae"][true] - f["ae_true"][true]).abs().sum()) / n_true,
        "contact_fraction": float(true.float().mean()) if true.numel() else 0.0,
        "vertices": int(true.numel()),
    }  # fmt: skip


def train_picr(config: str = "small", settings=None, run_dir="runs/picr-small", resume: bool = False,
               views: int = 8, val_views: int = 2, train_grasps: int | None = None, val_grasps: int | None = None,
               max_points: int = 800, augment_images: bool = True, device: str = "cpu", progress: bool = True,
               workers: int = 2, variant: str = "paper", init=None, honet=None) -> tuple[PiCR, dict]:  # fmt: skip
    """PiCR's training on SynthHO (what ``miho train picr`` runs): ``train`` split at ``views`` views
    a grasp, validated on ``val`` at ``val_views``; returns the model (the last epoch's weights)
    and the history. ``train_grasps`` / ``val_grasps`` cap the grasps (small runs).
    ``variant``: "paper" (image and object) or "hand_aware" (also the coarse hand).

    Stage 1 by default; stage 2 with ``honet`` (a HoNet weights file, e.g. the committed one):
    the objects (and a hand-aware model's hand) come from that frozen HoNet's predictions, in
    training and validation. ``init``: weights to start from (stage 2: the stage-1 model)."""
    from miho.nets.honet import load_honet
    from miho.nets.picr import build_picr
    from miho.train.checkpoints import file_origin, init_weights
    from miho.train.honet import predict_honet
    from miho.train.trainer import TrainSettings, train

    settings = settings or TrainSettings()
    torch.manual_seed(settings.seed)  # the initial weights
    model = build_picr(config, variant)
    origin = {"init": init_weights(model, init)} if init is not None else {}
    size = model.config.image_size
    train_data = build_picr_data("train", views, size, grasps=train_grasps, workers=workers, progress=progress)
    val_data = build_picr_data("val", val_views, size, grasps=val_grasps, workers=workers, progress=progress)
    coarse = val_coarse = None
    if honet is not None:
        origin["honet"] = file_origin(honet)
        net = load_honet(path=honet, device=device)
        coarse, val_coarse = (predict_honet(net, d, device=device) for d in (train_data, val_data))
    task = PiCRTask(model, train_data, val_data, max_points=max_points, augment=Augment() if augment_images else None,
                    coarse=coarse, val_coarse=val_coarse, origin=origin)  # fmt: skip
    history = train(task, settings, run_dir, resume=resume, device=device, progress=progress)
    return model, history


def evaluate_picr(model: PiCR, splits=("val", "test-seen", "test"), views: int = 2, heuristic: bool = True,
                  device="cpu", progress: bool = True, grasps: int | None = None, honet=None) -> dict:  # fmt: skip
    """Figures (:func:`field_figures`) of ``model`` and, with ``heuristic``, of the distance heuristic on
    each split at ``views`` views a grasp: ``{split: {"picr": {...}, "heuristic": {...}, "samples": n}}``.
    The coarse object (and hand) is each sample's fixed disturbance, or, with ``honet`` (a
    :class:`~miho.nets.honet.HoNet`), that network's prediction (stage 2's protocol)."""
    from miho.train.honet import predict_honet

    out = {}
    for split in splits:
        data = build_picr_data(split, views=views, size=model.config.image_size, grasps=grasps, progress=progress)
        coarse = predict_honet(honet, data, device=device) if honet is not None else None
        row = {"picr": field_figures(predict_fields(model, data, device=device, coarse=coarse)), "samples": len(data)}
        if heuristic:
            row["heuristic"] = field_figures(heuristic_fields(data, device=device, coarse=coarse))
        out[split] = row
    return out


#: the fixed subset the card's ``check`` figures are measured on (re-measured by the tests)
CHECK_SUBSET = {"split": "val", "views": 1, "grasps": 24}


def check_figures(model: PiCR) -> dict:
    """PiCR's figures on :data:`CHECK_SUBSET` (the first grasps of ``val``, one view each), without the
    precision-recall curve: what a test re-measures to check committed weights against their card."""
    s = CHECK_SUBSET
    data = build_picr_data(s["split"], views=s["views"], size=model.config.image_size, grasps=s["grasps"],
                           progress=False)  # fmt: skip
    fig = field_figures(predict_fields(model, data))
    return {k: v for k, v in fig.items() if k != "curve"}


def export_picr(run_dir, out, checkpoint: str = "best.pt", views: int = 2, device="cpu", progress: bool = True,
                note: str = "") -> dict:  # fmt: skip
    """Write a trained run's weights (fp16) to ``out`` and its model card (``out`` with ``.json``): the
    configuration, data, training settings, epochs, wall time, machine, commit, the per-epoch
    history and the figures of the exported (fp16) weights with the heuristic's beside them on
    ``val``, ``test-seen`` and ``test``; the VC threshold with the best F1 on ``val`` is stored as
    ``threshold``; ``note``: what else a reader should know (how the run went). Returns the card.

    A stage-2 run (fine-tuned on HoNet's objects) is evaluated on that HoNet's predictions
    (``figures``, and ``threshold`` from them) and on the fixed disturbances of stage 1
    (``figures_disturbed``); ``stage1`` keeps the figures of the card of the weights it started
    from."""
    import json
    from pathlib import Path

    from miho.nets.honet import load_honet
    from miho.nets.picr import PiCRConfig, load_picr
    from miho.train.checkpoints import export_weights, load_checkpoint, run_card, write_card

    state = load_checkpoint(Path(run_dir) / checkpoint)
    task = state["meta"]["task"]
    config, stage = task["config"], task.get("stage", 1)
    stage1 = None
    if stage == 2 and Path(task["init"]["path"]).with_suffix(".json").exists():
        before = json.loads(Path(task["init"]["path"]).with_suffix(".json").read_text())
        stage1 = {k: before.get(k) for k in ("weights", "epochs", "wall_s", "settings", "commit", "figures",
                                              "figures_views", "threshold")}  # fmt: skip
    model = PiCR(PiCRConfig.from_dict(config))
    model.load_state_dict(state["model"])
    out = Path(out)
    export_weights(model, out, {"config": config})
    what = (
        "PiCR (Yang et al., ICCV 2021, §5.2)"
        if not config.get("hand_aware")
        else "hand-aware PiCR (PiCR of Yang et al., ICCV 2021, §5.2, also reading the coarse hand; beyond the paper)"
    )
    what += ", stage 1" if stage == 1 else ", stage 2 (stage 1 fine-tuned on HoNet's predicted objects, Supp D.1)"
    card = {"model": what, "variant": PiCRConfig.from_dict(config).variant, "stage": stage,
            **run_card(state, out, checkpoint, note)}  # fmt: skip
    write_card(out, card)
    exported = load_picr(path=out)
    honet = load_honet(path=task["honet"]["path"], device=device) if stage == 2 else None
    figures = evaluate_picr(exported, views=views, device=device, progress=progress, honet=honet)
    card["figures"] = figures
    card["figures_views"] = views
    card["figures_coarse"] = "HoNet's predictions" if stage == 2 else "SynthHO's fixed disturbance"
    if stage == 2:
        card["figures_disturbed"] = evaluate_picr(exported, views=views, device=device, progress=progress)
        card["stage1"] = stage1
    card["check"] = check_figures(exported)
    card["check_subset"] = CHECK_SUBSET
    card["threshold"] = figures["val"]["picr"]["best_threshold"]
    write_card(out, card)
    return card


#: hand disturbance scales of the hand study (times the official jitter; the object's stays fixed)
HAND_SCALES = (0.0, 0.5, 1.0, 2.0, 4.0)


def hand_study(models: dict[str, PiCR], thresholds: dict[str, float], splits=("test-seen", "test"),
               scales=HAND_SCALES, views: int = 2, grasps: int | None = None, device="cpu",
               progress: bool = True) -> dict:  # fmt: skip
    """How the field's predictors fare as the coarse hand gets worse (issue 16's study).

    Each sample's coarse object keeps its fixed disturbance; its coarse hand is ``scale`` times its
    fixed disturbance (:func:`coarse_hand_params`). Predictors: the distance heuristic, and each of
    ``models`` (a model that reads no hand is evaluated once a split: the hand does not reach it)
    at its ``thresholds`` entry (the VC threshold chosen on ``val``).

    Returns ``{split: {"samples": n, "rows": [{"scale": k, "predictor": name, **figures}]}}`` with
    :func:`field_figures` (the precision-recall curve left out) for every scale and predictor.
    """
    out = {}
    for split in splits:
        size = next(iter(models.values())).config.image_size
        data = build_picr_data(split, views=views, size=size, grasps=grasps, progress=progress)
        rows, fixed = [], {}
        for scale in tqdm(scales, desc=f"hand study ({split})", disable=not progress):
            fields = {"heuristic": (heuristic_fields(data, hand_scale=scale, device=device), 0.5)}
            for name, model in models.items():
                if model.config.hand_aware:
                    fields[name] = (predict_fields(model, data, device=device, hand_scale=scale), thresholds[name])
                else:
                    if name not in fixed:
                        fixed[name] = predict_fields(model, data, device=device)
                    fields[name] = (fixed[name], thresholds[name])
            for name, (f, t) in fields.items():
                fig = field_figures(f, t)
                rows.append({"scale": scale, "predictor": name, **{k: v for k, v in fig.items() if k != "curve"}})
        out[split] = {"samples": len(data), "rows": rows}
    return out


def hand_study_markdown(study: dict) -> str:
    """:func:`hand_study`'s results as a Markdown table: a row a split and predictor, a column a
    scale, each cell VC F1 / CR accuracy / AE mean absolute error."""
    lines = []
    for split, res in study.items():
        scales = sorted({r["scale"] for r in res["rows"]})
        if not lines:
            lines += ["| split | predictor | " + " | ".join(f"hand x{k:g}" for k in scales) + " |",
                      "|---|---|" + "---|" * len(scales)]  # fmt: skip
        for name in dict.fromkeys(r["predictor"] for r in res["rows"]):
            cells = [next(f"{r['f1']:.2f} / {r['cr_accuracy']:.2f} / {r['ae_mae']:.3f}" for r in res["rows"]
                          if r["predictor"] == name and r["scale"] == k) for k in scales]  # fmt: skip
            lines.append(f"| {split} ({res['samples']}) | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def f1_at(figures: dict, t_vc: float) -> tuple[float, float, float]:
    """VC precision, recall and F1 at ``t_vc`` read from :func:`field_figures`' precision-recall
    curve (``t_vc`` one of :data:`THRESHOLDS`), e.g. a test split's at the threshold chosen on ``val``."""
    for t, p, r, f in figures["curve"]:
        if abs(t - t_vc) < 1e-9:
            return p, r, f
    raise ValueError(f"t_vc must be one of the curve's thresholds {THRESHOLDS}, got {t_vc!r}")


#: the committed results of ``miho bench picr --study hand --out miho/assets/picr_hand_study.json``
HAND_STUDY_FILE = ASSETS / "picr_hand_study.json"


def load_hand_study() -> dict:
    """The committed hand study (:data:`HAND_STUDY_FILE`): the results of :func:`miho.bench.bench_picr_hand`
    with their command, commit and the check slice the tests re-run."""
    import json

    if not HAND_STUDY_FILE.exists():
        raise ValueError(f"no hand study at {HAND_STUDY_FILE}: run "
                         f"`miho bench picr --study hand --out {HAND_STUDY_FILE}`")  # fmt: skip
    return json.loads(HAND_STUDY_FILE.read_text())
