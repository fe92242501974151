"""PiCR, the network that predicts the Contact Potential Field from an image (§5.2, Eq. 8-9, Supp D.1).

Inputs: an RGB image, the coarse object's vertices in the camera frame and the camera's
projection. The image goes through a stacked hourglass (:mod:`miho.nets.hourglass`); every object
vertex is projected into the image and the feature map is sampled there bilinearly (Eq. 8's
f(pi(V_o), b(I))); the vertex's root-relative depth and an in-image flag are appended (F'); a
PointNet (:mod:`miho.nets.pointnet`) turns F' into per-vertex features F; three cascaded MLP
heads give Vertex Contact, Contact Region and Anchor Elasticity (Eq. 9):

    VC = h_vc(F)        one logit a vertex
    CR = h_cr([VC, F])  17 logits a vertex (VC enters as its probability)
    AE = h_ae([CR, F])  one elasticity in (0, 1) a vertex (CR enters as its softmax)

In training every stack's feature map goes through the same encoder and heads (the losses are
summed); prediction uses the last stack.

Conventions. Images are (B, 3, S, S) floats in [0, 1] at the configuration's ``image_size``.
``P`` is the (B, 3, 3) matrix that projects camera-frame points to pixels: pixel (u, v) =
(P x)[:2] / (P x)[2], with pixel centres at integer + 0.5 (the renderer's convention,
:mod:`miho.data.render`), so pixel i spans [i, i + 1). For a plain camera P is the intrinsics K;
an image resized or warped by an affine map A (pixels to pixels) has P = A K. Root-relative
depth is (z - z_centre) / ``depth_scale`` with z_centre the mean z of the object's real vertices
(metres; ``depth_scale`` 0.1 m puts a hand-held object's vertices within about +-1).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from miho.anchors import NUM_REGIONS
from miho.checks import check_device, check_mask, check_tensor
from miho.cpf import CPF
from miho.nets.config import NetConfig
from miho.nets.hand_features import HAND_FEATURES
from miho.nets.hourglass import StackedHourglass
from miho.nets.pointnet import PointNetEncoder, SplitLinear, point_mlp

__all__ = [
    "CONFIGS", "PiCR", "PiCRConfig", "PiCROutput", "VARIANTS", "asset_path", "build_picr", "load_picr", "picr_card",
    "pixel_aligned_features", "resize_projection",
]  # fmt: skip

ASSETS = Path(__file__).resolve().parent.parent / "assets"


@dataclass(frozen=True)
class PiCRConfig(NetConfig):
    """A PiCR architecture. Named in :data:`CONFIGS`: ``small`` (the committed model, trained on 2
    CPU cores), ``paper`` (the official widths, for GPUs) and ``tiny`` (tests, the book's live run)."""

    name: str = "small"
    image_size: int = 128  #: input side, pixels
    channels: int = 64  #: hourglass feature channels (official 64)
    stacks: int = 2  #: hourglass stacks (paper 2)
    depth: int = 3  #: levels of each hourglass
    groups: int = 8  #: GroupNorm groups
    point_widths: tuple[int, ...] = (64, 128, 256)  #: PointNet widths after the input (channels + 2)
    concat_all: bool = True  #: keep every PointNet layer's output (official)
    head_widths: tuple[int, ...] = (128, 64)  #: hidden widths of each head
    depth_scale: float = 0.1  #: metres; root-relative depth is divided by it
    hand_aware: bool = False  #: also read the coarse hand (:mod:`miho.nets.hand_features`; beyond the paper)

    def __post_init__(self) -> None:
        multiple = 4 * 2**self.depth
        if self.image_size % multiple:
            raise ValueError(f"image_size must be divisible by 4 * 2**depth = {multiple}, got {self.image_size}")
        if self.depth_scale <= 0:
            raise ValueError(f"depth_scale must be > 0, got {self.depth_scale}")

    @property
    def variant(self) -> str:
        """``"paper"`` (image and object, Eq. 8) or ``"hand_aware"`` (also the coarse hand)."""
        return "hand_aware" if self.hand_aware else "paper"


CONFIGS = {
    "tiny": PiCRConfig(name="tiny", image_size=64, channels=16, depth=2, point_widths=(32, 64), head_widths=(64,)),
    "small": PiCRConfig(),
    "paper": PiCRConfig(name="paper", image_size=256, channels=64, depth=4,
                        point_widths=(128, 128, 128, 512, 2048), head_widths=(256, 256, 128)),
}  # fmt: skip


class Head(nn.Module):
    """One of Eq. 9's MLP heads: the PointNet feature F (as its parts) and an extra per-vertex input
    (the previous head's output, or nothing) -> (B, N, out). Equal to an MLP on their
    concatenation: a :class:`~miho.nets.pointnet.SplitLinear`, then LayerNorm-ReLU layers."""

    def __init__(self, parts: tuple[int, ...], extra: int, hidden: tuple[int, ...], out: int) -> None:
        super().__init__()
        self.first = SplitLinear((*parts, extra) if extra else parts, hidden[0])
        self.rest = nn.Sequential(nn.LayerNorm(hidden[0]), nn.ReLU(inplace=True),
                                  point_mlp((*hidden, out), final_activation=False))  # fmt: skip

    def forward(self, parts: list[torch.Tensor], extra: torch.Tensor | None = None) -> torch.Tensor:
        return self.rest(self.first(parts if extra is None else [*parts, extra]))


@dataclass
class PiCROutput:
    """What :meth:`PiCR.forward` returns; one list entry a stack (only the last one in eval).

    vc_logits: (B, N) VC logits. cr_logits: (B, N, 17). ae: (B, N) elasticities in (0, 1).
    in_image: (B, N) bool, real vertices that project inside the image. uv: (B, N, 2) pixels.
    """

    vc_logits: list[torch.Tensor]
    cr_logits: list[torch.Tensor]
    ae: list[torch.Tensor]
    in_image: torch.Tensor
    uv: torch.Tensor


def resize_projection(P: torch.Tensor, scale: float) -> torch.Tensor:
    """The projection of an image resized by ``scale`` (pixel centres at integer + 0.5, so a
    pixel's corner u maps to u * scale): (..., 3, 3) -> (..., 3, 3)."""
    S = torch.diag(torch.tensor([scale, scale, 1.0], dtype=P.dtype, device=P.device))
    return S @ P


def pixel_aligned_features(
    fmap: torch.Tensor, verts: torch.Tensor, P: torch.Tensor, mask: torch.Tensor, image_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample a feature map at the projections of points (Eq. 8's f(pi(V_o), b(I))).

    The feature map covers the image: its cell (i, j) of a map of w cells spans image pixels
    [j S/w, (j + 1) S/w) (``grid_sample`` with ``align_corners=False`` and the normalised
    coordinate 2 u / S - 1). Points behind the camera or projecting outside the image, and
    padded points, get zero features and ``in_image`` False.

    Args:
        fmap: (B, C, h, w) features. verts: (B, N, 3) camera frame, metres. P: (B, 3, 3)
        projection to pixels. mask: (B, N) bool, real points. image_size: S, pixels.

    Returns:
        features (B, N, C), in_image (B, N) bool, uv (B, N, 2) pixels (0 where z <= 0).
    """
    uvw = verts @ P.transpose(1, 2)
    z = uvw[..., 2]
    front = z > 1e-6
    uv = torch.where(front[..., None], uvw[..., :2] / z.clamp_min(1e-6)[..., None], torch.zeros_like(uvw[..., :2]))
    inside = mask & front & (uv >= 0).all(-1) & (uv < image_size).all(-1)
    grid = torch.where(inside[..., None], uv * (2.0 / image_size) - 1.0, torch.zeros_like(uv))
    sampled = F.grid_sample(fmap, grid[:, :, None, :], mode="bilinear", padding_mode="zeros", align_corners=False)
    features = sampled[..., 0].transpose(1, 2) * inside[..., None]
    return features, inside, uv


class PiCR(nn.Module):
    """PiCR (see the module docstring). Build it with :func:`build_picr` or load the committed
    model with :func:`load_picr`."""

    def __init__(self, config: PiCRConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.backbone = StackedHourglass(c.stacks, c.channels, c.depth, c.groups)
        extra = 2 + (HAND_FEATURES if c.hand_aware else 0)
        self.encoder = PointNetEncoder((c.channels + extra, *c.point_widths), c.concat_all)
        parts = self.encoder.part_channels
        self.head_vc = Head(parts, 0, c.head_widths, 1)
        self.head_cr = Head(parts, 1, c.head_widths, NUM_REGIONS)
        self.head_ae = Head(parts, NUM_REGIONS, c.head_widths, 1)

    def _check(self, image, obj_verts, P, obj_mask, hand_features) -> torch.Tensor:
        S = self.config.image_size
        check_tensor("image", image, (None, 3, S, S), finite="cpu")
        B = image.shape[0]
        check_tensor("obj_verts", obj_verts, (B, None, 3), finite="cpu")
        check_tensor("P", P, (B, 3, 3))
        if obj_mask is None:
            obj_mask = torch.ones(obj_verts.shape[:2], dtype=torch.bool, device=obj_verts.device)
        check_mask("obj_mask", obj_mask, tuple(obj_verts.shape[:2]))
        for name, t in (("obj_verts", obj_verts), ("P", P), ("obj_mask", obj_mask)):
            check_device(name, t, image.device, "image")
        if self.config.hand_aware:
            if hand_features is None:
                raise ValueError("hand_features is required by a hand-aware PiCR: compute them from the coarse hand "
                                 "with miho.nets.hand_features.hand_features")  # fmt: skip
            check_tensor("hand_features", hand_features, (B, obj_verts.shape[1], HAND_FEATURES), finite="cpu")
            check_device("hand_features", hand_features, image.device, "image")
        elif hand_features is not None:
            raise ValueError("hand_features given to the paper's PiCR, which reads no hand: build it with "
                             "hand_aware=True (a configuration's variant)")  # fmt: skip
        return obj_mask

    def feature_maps(self, image: torch.Tensor) -> list[torch.Tensor]:
        """b(I): the hourglass's feature map of every stack, each (B, channels, S/4, S/4), from
        (B, 3, S, S) images in [0, 1] (centred on 0.5 inside). The convolutions run channels-last
        (the same numbers to float rounding; on 2 CPU cores about 1.5 times faster than NCHW)."""
        return self.backbone((image - 0.5).contiguous(memory_format=torch.channels_last))

    def forward(
        self,
        image: torch.Tensor,
        obj_verts: torch.Tensor,
        P: torch.Tensor,
        obj_mask: torch.Tensor | None = None,
        hand_features: torch.Tensor | None = None,
    ) -> PiCROutput:
        """Args: image (B, 3, S, S) in [0, 1]; obj_verts (B, N, 3) camera frame, metres; P (B, 3, 3)
        projection to pixels (see the module docstring); obj_mask (B, N) bool (default all real);
        hand_features (B, N, :data:`~miho.nets.hand_features.HAND_FEATURES`): the coarse hand's
        features, required by a hand-aware configuration and refused by the paper's.
        In training mode every stack is decoded, in eval mode the last one."""
        obj_mask = self._check(image, obj_verts, P, obj_mask, hand_features)
        maps = self.feature_maps(image)
        if not self.training:
            maps = maps[-1:]
        n = obj_mask.sum(1, keepdim=True).clamp_min(1)
        z = obj_verts[..., 2]
        centre = (z * obj_mask).sum(1, keepdim=True) / n
        depth = ((z - centre) / self.config.depth_scale * obj_mask)[..., None]
        out = PiCROutput([], [], [], obj_mask, torch.zeros_like(obj_verts[..., :2]))
        for fmap in maps:
            feats, inside, uv = pixel_aligned_features(fmap, obj_verts, P, obj_mask, self.config.image_size)
            point = [feats, depth, inside[..., None].to(feats.dtype)]
            if hand_features is not None:
                point.append(hand_features.to(feats.dtype))
            f = self.encoder(torch.cat(point, -1), obj_mask)
            vc = self.head_vc(f)
            cr = self.head_cr(f, torch.sigmoid(vc))
            ae = self.head_ae(f, torch.softmax(cr, -1))
            out.vc_logits.append(vc[..., 0])
            out.cr_logits.append(cr)
            out.ae.append(torch.sigmoid(ae[..., 0]))
            out.in_image, out.uv = inside, uv
        return out

    @torch.no_grad()
    def predict(
        self,
        image: torch.Tensor,
        obj_verts: torch.Tensor,
        P: torch.Tensor,
        obj_mask: torch.Tensor | None = None,
        hand_features: torch.Tensor | None = None,
    ) -> CPF:
        """The predicted field from the last stack (eval mode for the call): a :class:`miho.cpf.CPF`
        with VC probabilities, CR ids (-1 on padded vertices) and AE; padded vertices get VC 0.
        Arguments as :meth:`forward`."""
        was_training = self.training
        self.eval()
        try:
            out = self(image, obj_verts, P, obj_mask, hand_features)
        finally:
            self.train(was_training)
        real = obj_mask if obj_mask is not None else torch.ones_like(out.ae[-1], dtype=torch.bool)
        vc = torch.sigmoid(out.vc_logits[-1]).float() * real
        cr = torch.where(real, out.cr_logits[-1].argmax(-1), torch.full_like(real, -1, dtype=torch.long))
        return CPF(vc, cr, out.ae[-1].float() * real)


VARIANTS = ("paper", "hand_aware")


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")


def build_picr(config: str | PiCRConfig = "small", variant: str | None = None) -> PiCR:
    """A freshly initialised PiCR of a named configuration (:data:`CONFIGS`) or a :class:`PiCRConfig`;
    ``variant`` ("paper" or "hand_aware", default: the configuration's) sets ``hand_aware``."""
    if isinstance(config, str):
        if config not in CONFIGS:
            raise ValueError(f"config must be one of {sorted(CONFIGS)} or a PiCRConfig, got {config!r}")
        config = CONFIGS[config]
    if variant is not None:
        _check_variant(variant)
        config = dataclasses.replace(config, hand_aware=variant == "hand_aware")
    return PiCR(config)


def asset_path(name: str = "small", variant: str = "paper", stage: int = 2) -> Path:
    """Where the committed model ``name`` of ``variant`` and training ``stage`` lives:
    ``miho/assets/picr_<name>[_hand_aware][_stage1].pt``. Stage 2 (the default, what the pipeline
    uses) is fine-tuned on HoNet's predicted objects; stage 1 was trained on disturbed true
    objects, the protocol the PiCR chapter and its studies use (Supp D.1)."""
    _check_variant(variant)
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage!r}")
    return ASSETS / (f"picr_{name}" + ("" if variant == "paper" else f"_{variant}") + ("_stage1" if stage == 1 else "")
                     + ".pt")  # fmt: skip


def picr_card(name: str = "small", path: str | Path | None = None, variant: str = "paper", stage: int = 2) -> dict:
    """The model card (JSON) of the committed PiCR model ``name`` of ``variant`` and ``stage`` (or of
    the weights at ``path``)."""
    weights = Path(path) if path is not None else asset_path(name, variant, stage)
    card = weights.with_suffix(".json")
    if not card.exists():
        raise ValueError(f"no model card at {card}: export a trained run with `miho export picr`")
    return json.loads(card.read_text())


def load_picr(name: str = "small", device: str | torch.device = "cpu", path: str | Path | None = None,
              variant: str | None = None, stage: int = 2) -> PiCR:  # fmt: skip
    """The committed PiCR model (eval mode), as ``load_hand()`` loads the hand.

    Args:
        name: the committed model's configuration name (``miho/assets/picr_<name>.pt`` and its card
            ``picr_<name>.json``; :func:`asset_path`).
        device: where to put it.
        path: another weights file written by :func:`miho.train.checkpoints.export_weights`
            (its card beside it, same stem, ``.json``).
        variant: "paper" (the default for a committed model) or "hand_aware"; with ``path``, the
            variant the file must hold (None: whichever it holds).
        stage: the committed model's training stage (:func:`asset_path`): 2, fine-tuned on HoNet's
            objects (the pipeline's), or 1, trained on disturbed true objects.

    Raises:
        ValueError: no such model, weights of the other variant, a card that does not match the
        weights, a corrupt file.
    """
    from miho.train.checkpoints import load_weights

    if path is None:
        weights = asset_path(name, variant or "paper", stage)
        if not weights.exists():
            raise ValueError(f"no PiCR model at {weights}: train one with `miho train picr` (committed models: "
                             f"{sorted(p.stem for p in ASSETS.glob('picr_*.pt'))})")  # fmt: skip
    else:
        weights = Path(path)
        if not weights.exists():
            raise ValueError(f"no PiCR weights at {weights}")
    card = picr_card(path=weights)
    config = PiCRConfig.from_dict(card["config"])
    if variant is not None:
        _check_variant(variant)
        if config.variant != variant:
            raise ValueError(f"{weights} holds the {config.variant!r} PiCR, not the {variant!r} one asked for")
    model = PiCR(config)
    load_weights(model, weights, expect={"config": card["config"]})
    return model.to(device).eval()
