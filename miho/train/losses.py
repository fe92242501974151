"""The networks' losses. PiCR's (Eq. 5-7): focal loss on Vertex Contact, focal loss on Contact
Region, binary cross-entropy on Anchor Elasticity. HoNet's (:func:`honet_loss`, MeshRegNet's as
Supp D.1 uses them): camera-space hand joint and object vertex errors, shape and pose regularisers.

Each loss is a per-sample mean over the vertices it counts, then a mean over the samples: a
sample's weight does not depend on how many vertices its object has, and the mean over a batch
split across processes (DistributedDataParallel averages gradients) equals the mean over the
whole batch. Which vertices count:

* VC (Eq. 5): real vertices projected inside the image (``1^img``);
* CR (Eq. 6) and AE (Eq. 7): the same, that are also in contact in the ground truth (``1^VC``).

A sample with no counted vertex adds 0 to its term.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["HoNetLossWeights", "PiCRLossWeights", "binary_focal_loss", "elasticity_loss", "honet_loss",
           "masked_sample_mean", "picr_loss", "region_focal_loss"]  # fmt: skip


def masked_sample_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, N) values and (B, N) bool -> scalar: the mean over samples of each sample's mean over its
    masked entries (0 for a sample with none)."""
    m = mask.to(values.dtype)
    per_sample = (values * m).sum(1) / m.sum(1).clamp_min(1)
    return per_sample.mean() if per_sample.numel() else values.sum() * 0


def binary_focal_loss(
    logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, alpha: float = 0.9, gamma: float = 2.0
) -> torch.Tensor:
    """Eq. 5: -alpha_t (1 - p_t)^gamma log p_t, with p_t the predicted probability of the true
    class and alpha_t = ``alpha`` for positives, 1 - ``alpha`` for negatives.

    Args:
        logits: (B, N) VC logits. target: (B, N) 0/1 (ground-truth contact). mask: (B, N) bool.
        alpha: weight of the positive class (the official 0.9; the paper's inverse class frequency
            is the fraction of negatives, see :func:`miho.train.picr.contact_alpha`).
        gamma: focusing exponent (the paper: 2).
    """
    t = target.to(logits.dtype)
    log_p = F.logsigmoid(logits)
    log_q = F.logsigmoid(-logits)
    log_pt = t * log_p + (1 - t) * log_q
    pt = log_pt.exp()
    alpha_t = alpha * t + (1 - alpha) * (1 - t)
    return masked_sample_mean(-alpha_t * (1 - pt) ** gamma * log_pt, mask)


def region_focal_loss(
    logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, gamma: float = 2.0,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:  # fmt: skip
    """Eq. 6: -(1 - m)^gamma log m, m the softmax probability of the true region.

    Args:
        logits: (B, N, 17). target: (B, N) region ids (anything where ``mask`` is False).
        mask: (B, N) bool, the vertices counted. weight: optional (17,) per-region factor (the
        official rewrite's per-region alpha).
    """
    ids = torch.where(mask, target, torch.zeros_like(target)).long()
    log_m = torch.log_softmax(logits, -1).gather(-1, ids[..., None])[..., 0]
    loss = -((1 - log_m.exp()) ** gamma) * log_m
    if weight is not None:
        loss = loss * weight.to(loss)[ids]
    return masked_sample_mean(loss, mask)


def elasticity_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. 7: binary cross-entropy between predicted (B, N) elasticities in (0, 1) and the ground
    truth's, over the masked vertices."""
    p = pred.clamp(1e-6, 1 - 1e-6)
    t = target.to(p.dtype)
    return masked_sample_mean(-(t * p.log() + (1 - t) * (1 - p).log()), mask)


@dataclass(frozen=True)
class PiCRLossWeights:
    """Weights of the three terms (official: VC 10, CR 10, AE 1), the VC focal loss's alpha and gamma."""

    vc: float = 10.0
    cr: float = 10.0
    ae: float = 1.0
    alpha: float = 0.9
    gamma: float = 2.0


def picr_loss(output, vc: torch.Tensor, cr: torch.Tensor, ae: torch.Tensor,
              weights: PiCRLossWeights | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # fmt: skip
    """The weighted sum of Eq. 5-7 over every stack of a :class:`miho.nets.picr.PiCROutput`.

    Args:
        output: the network's output (its ``in_image`` masks padding and out-of-image vertices).
        vc: (B, N) ground-truth contact, 0/1. cr: (B, N) region ids. ae: (B, N) elasticities.
        weights: default :class:`PiCRLossWeights` (the official values).

    Returns:
        the total (scalar) and its unweighted terms summed over the stacks {"vc", "cr", "ae"}.
    """
    weights = weights or PiCRLossWeights()
    seen = output.in_image
    touch = seen & (vc > 0.5)
    terms = {"vc": 0.0, "cr": 0.0, "ae": 0.0}
    for v, c, a in zip(output.vc_logits, output.cr_logits, output.ae):
        terms["vc"] = terms["vc"] + binary_focal_loss(v, vc, seen, weights.alpha, weights.gamma)
        terms["cr"] = terms["cr"] + region_focal_loss(c, cr, touch, weights.gamma)
        terms["ae"] = terms["ae"] + elasticity_loss(a, ae, touch)
    total = weights.vc * terms["vc"] + weights.cr * terms["cr"] + weights.ae * terms["ae"]
    return total, terms


@dataclass(frozen=True)
class HoNetLossWeights:
    """Weights of HoNet's terms. The official ones: joints 0.5, object vertices 0.5, shape 5e-7,
    pose 5e-6 (regularisers). ``attraction`` and ``repulsion`` turn HoNet into ObMan* (Table 1:
    Hasson et al.'s contact losses added). The parameter terms are off by default (the paper has none):
    ``rot`` (the wrist rotation), ``pca_fit`` (the PCA pose coefficients) and ``shape_fit``
    (the shape) pull the hand's parameters towards the true ones, which a network trained from
    scratch needs to learn the wrist's rotation (see :mod:`miho.train.honet`)."""

    joints: float = 0.5
    obj_verts: float = 0.5
    shape: float = 5e-7
    pose: float = 5e-6
    rot: float = 0.0
    pca_fit: float = 0.0
    shape_fit: float = 0.0
    attraction: float = 0.0  #: ObMan*: Hasson et al.'s attraction (:func:`miho.geo.obman_losses`)
    repulsion: float = 0.0  #: ObMan*: Hasson et al.'s repulsion

    @property
    def contact(self) -> bool:
        """Whether the ObMan* contact terms are on."""
        return bool(self.attraction or self.repulsion)


def honet_loss(joints: torch.Tensor, joints_true: torch.Tensor, obj_verts: torch.Tensor, obj_verts_true: torch.Tensor,
               obj_mask: torch.Tensor, shape: torch.Tensor, pca: torch.Tensor,
               weights: HoNetLossWeights | None = None, truth: dict | None = None,
               contact: tuple[torch.Tensor, torch.Tensor] | None = None,
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # fmt: skip
    """HoNet's loss: the weighted sum of

    * ``joints``: the mean over joints of the squared distance (m^2) between predicted and true
      camera-frame joints, (B, J, 3) each;
    * ``obj_verts``: the same over the object's real vertices, (B, N, 3) each, ``obj_mask`` (B, N);
    * ``shape``: the squared norm of the (B, S) shape coefficients;
    * ``pose``: the squared norm of the (B, K) PCA pose coefficients;
    * with non-zero weights, the parameter terms against ``truth`` ({"rot": ((B, 3, 3) predicted,
      (B, 3, 3) true wrist rotations), "pca": (B, K) true coefficients, "shape": (B, S) true
      shape}): ``rot`` the squared Frobenius distance of the rotations (0 to 8), ``pca_fit`` and
      ``shape_fit`` the squared distances of the coefficients;
    * with non-zero ``attraction`` / ``repulsion`` weights, ``contact`` = ((B,) attraction, (B,)
      repulsion) of :func:`miho.geo.obman_losses`, metres;

    each a per-sample value averaged over the samples. Returns the total and the unweighted terms.
    """
    weights = weights or HoNetLossWeights()
    terms = {
        "joints": (joints - joints_true).square().sum(-1).mean(1).mean(),
        "obj_verts": masked_sample_mean((obj_verts - obj_verts_true).square().sum(-1), obj_mask),
        "shape": shape.square().sum(-1).mean(),
        "pose": pca.square().sum(-1).mean(),
    }
    if weights.rot or weights.pca_fit or weights.shape_fit:
        if truth is None:
            raise ValueError("the parameter terms (rot, pca_fit, shape_fit) need truth={'rot', 'pca', 'shape'}")
        rot, rot_true = truth["rot"]
        terms["rot"] = (rot - rot_true).square().sum((-1, -2)).mean()
        terms["pca_fit"] = (pca - truth["pca"]).square().sum(-1).mean()
        terms["shape_fit"] = (shape - truth["shape"]).square().sum(-1).mean()
    if weights.contact:
        if contact is None:
            raise ValueError("the contact terms (attraction, repulsion) need contact=(attraction, repulsion)")
        terms["attraction"], terms["repulsion"] = contact[0].mean(), contact[1].mean()
    total = sum(getattr(weights, k) * v for k, v in terms.items())
    return total, terms
