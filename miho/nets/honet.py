"""HoNet, the first stage of MIHO (§5.1, Supp D.1): from an RGB image, a coarse hand and the known
object placed in the camera frame. It is the MeshRegNet baseline of Hasson et al. (CVPR 2020)
without its mesh-refinement stages.

A ResNet-18 (:mod:`miho.nets.resnet`) turns the image into one feature vector; two MLP heads read it:

* the hand: the wrist rotation, the 15 coefficients of a PCA pose space of the training grasps'
  finger poses (:class:`miho.hand.pca.PosePCA`, kept as buffers), the hand's shape, and where its
  wrist joint is: a scale and a 2D offset;
* the object: its rotation, and a scale and a 2D offset for its canonical origin (the object
  mesh is known: its canonical vertices are turned and moved).

Rotations come out as 6 numbers turned into a matrix by Gram-Schmidt (Zhou et al., CVPR 2019: a
continuous representation, unlike axis-angle). A point's position comes out as MeshRegNet gives
it: the pixel (u, v) it projects to, u = S/2 (1 + o_u) for the image side S, and its scale s in
pixels a metre, s = S ``scale_ref`` exp(t); its depth is then z = f / s with f the camera's
focal length in pixels (the projection ``P``'s first diagonal entry), and the point is
z P^-1 (u, v, 1). An image zoomed by k (its P's f times k) shows the hand k times larger at the
same depth, so s is read from the image and z follows from the camera. ``scale_ref`` makes t = 0
a hand 0.7 m from a camera with f = 2.5 S (SynthHO's median).

The shape is bounded: ``shape_bound`` tanh(x), the Anny hand's coefficients living in [-1, 1].
Unbounded, a network trained from scratch shrinks the hand towards a point (coefficients near -5,
hands 3 cm long): while it cannot yet tell the wrist's rotation, a small hand at the right place
is the least-squares answer for the joints, and the official shape regulariser (5e-7) is far too
weak to stop it. ``shape_bound=None`` leaves the shape free (MANO's coefficients are unbounded).

Conventions as :mod:`miho.nets.picr`: images (B, 3, S, S) in [0, 1]; ``P`` (B, 3, 3) projects
camera-frame points to pixels (pixel centres at integer + 0.5; an augmented image's P = A K).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from miho.checks import check_tensor
from miho.hand.model import NUM_JOINTS, HandModel, HandOutput
from miho.hand.pca import PosePCA
from miho.nets.config import NetConfig
from miho.nets.resnet import ResNet18
from miho.rotations import axis_angle_to_matrix, matrix_to_axis_angle

__all__ = ["CONFIGS", "VARIANTS", "HoNet", "HoNetConfig", "HoNetOutput", "asset_path", "build_honet", "honet_card",
           "load_honet", "rotation_6d_to_matrix"]  # fmt: skip

ASSETS = Path(__file__).resolve().parent.parent / "assets"
_FINGERS = 3 * (NUM_JOINTS - 1)


@dataclass(frozen=True)
class HoNetConfig(NetConfig):
    """A HoNet architecture. Named in :data:`CONFIGS`: ``small`` (the committed model, trained on 2
    CPU cores), ``paper`` (MeshRegNet's ResNet-18 at 256 px, for GPUs) and ``tiny`` (tests)."""

    name: str = "small"
    image_size: int = 128  #: input side, pixels
    width: int = 24  #: ResNet-18 first-stage channels (the original: 64)
    hidden: tuple[int, ...] = (256,)  #: hidden widths of each head
    pca: int = 15  #: PCA pose components (the paper: 15)
    num_shape: int = 5  #: hand shape coefficients (the default Anny hand: 5; MANO: 10)
    shape_bound: float | None = 1.0  #: shape = shape_bound tanh(x); None: unbounded
    scale_ref: float = 2.5 / 0.7  #: pixels a metre / S at t = 0 (f = 2.5 S, 0.7 m)
    groups: int = 8  #: GroupNorm groups

    def __post_init__(self) -> None:
        if self.image_size % 32:
            raise ValueError(f"image_size must be divisible by 32, got {self.image_size}")
        if not 1 <= self.pca <= _FINGERS:
            raise ValueError(f"pca must be in [1, {_FINGERS}], got {self.pca}")
        if self.scale_ref <= 0:
            raise ValueError(f"scale_ref must be > 0, got {self.scale_ref}")
        if self.shape_bound is not None and self.shape_bound <= 0:
            raise ValueError(f"shape_bound must be > 0 or None, got {self.shape_bound}")


CONFIGS = {
    "tiny": HoNetConfig(name="tiny", image_size=64, width=8, hidden=(64,)),
    "small": HoNetConfig(),
    "paper": HoNetConfig(name="paper", image_size=256, width=64, hidden=(512, 512)),
}  # fmt: skip


def rotation_6d_to_matrix(x: torch.Tensor) -> torch.Tensor:
    """(..., 6) -> (..., 3, 3) rotation whose first two columns are the Gram-Schmidt
    orthonormalisation of x[..., :3] and x[..., 3:] (the third: their cross product)."""
    a, b = x[..., :3], x[..., 3:]
    c1 = F.normalize(a, dim=-1)
    c2 = F.normalize(b - (c1 * b).sum(-1, keepdim=True) * c1, dim=-1)
    return torch.stack((c1, c2, torch.linalg.cross(c1, c2)), -1)


def _mlp(c_in: int, hidden: tuple[int, ...], out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(c_in, h), nn.ReLU(inplace=True)]
        c_in = h
    layers.append(nn.Linear(c_in, out))
    return nn.Sequential(*layers)


@dataclass
class HoNetOutput:
    """What :meth:`HoNet.forward` returns (camera frame, metres).

    hand_rot (B, 3, 3) wrist rotation; hand_pca (B, K) PCA pose coefficients; hand_shape (B, S);
    hand_root (B, 3) the wrist joint's position; obj_rot (B, 3, 3) and obj_trans (B, 3) the
    object's pose (canonical -> camera)."""

    hand_rot: torch.Tensor
    hand_pca: torch.Tensor
    hand_shape: torch.Tensor
    hand_root: torch.Tensor
    obj_rot: torch.Tensor
    obj_trans: torch.Tensor


class HoNet(nn.Module):
    """HoNet (see the module docstring). Build it with :func:`build_honet` or load the committed
    model with :func:`load_honet`.

    Args:
        config: the architecture.
        pca: the finger-pose basis (its ``components`` (K, 45) and ``mean`` become buffers).
    """

    def __init__(self, config: HoNetConfig, pca: PosePCA | None = None) -> None:
        super().__init__()
        self.config = c = config
        self.backbone = ResNet18(c.width, c.groups)
        feat = self.backbone.out_channels
        self.hand_head = _mlp(feat, c.hidden, 6 + c.pca + c.num_shape + 3)
        self.obj_head = _mlp(feat, c.hidden, 6 + 3)
        comps = torch.zeros(c.pca, _FINGERS) if pca is None else pca.components.float()
        mean = torch.zeros(_FINGERS) if pca is None else pca.mean.float()
        if tuple(comps.shape) != (c.pca, _FINGERS):
            raise ValueError(f"pca has {comps.shape[0]} components, the configuration {c.pca}")
        self.register_buffer("pca_components", comps)
        self.register_buffer("pca_mean", mean)
        identity = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
        with torch.no_grad():  # start at identity rotations, zero coefficients, the image centre, t = 0
            for head in (self.hand_head, self.obj_head):
                head[-1].weight.mul_(0.1)
                head[-1].bias.zero_()
                head[-1].bias[:6] = identity

    def _position(self, raw: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
        """(B, 3) (o_u, o_v, t) -> (B, 3) camera-frame point (see the module docstring)."""
        S = self.config.image_size
        uv = 0.5 * S * (1.0 + raw[:, :2])
        s = S * self.config.scale_ref * torch.exp(raw[:, 2].clamp(-5.0, 5.0))
        z = P[:, 0, 0] / s
        pix = torch.cat((uv, torch.ones_like(uv[:, :1])), 1)
        return z[:, None] * torch.linalg.solve(P, pix[..., None])[..., 0]

    def _shape(self, raw: torch.Tensor) -> torch.Tensor:
        bound = self.config.shape_bound
        return raw if bound is None else bound * torch.tanh(raw)

    def forward(self, image: torch.Tensor, P: torch.Tensor) -> HoNetOutput:
        """image (B, 3, S, S) in [0, 1]; P (B, 3, 3) projection to pixels -> :class:`HoNetOutput`."""
        S = self.config.image_size
        check_tensor("image", image, (None, 3, S, S), finite="cpu")
        check_tensor("P", P, (image.shape[0], 3, 3))
        f = self.backbone(image - 0.5)
        h, o = self.hand_head(f), self.obj_head(f)
        k, n = self.config.pca, self.config.num_shape
        return HoNetOutput(
            hand_rot=rotation_6d_to_matrix(h[:, :6]), hand_pca=h[:, 6 : 6 + k],
            hand_shape=self._shape(h[:, 6 + k : 6 + k + n]), hand_root=self._position(h[:, 6 + k + n :], P),
            obj_rot=rotation_6d_to_matrix(o[:, :6]),
            obj_trans=self._position(o[:, 6:], P),
        )  # fmt: skip

    @property
    def pose_pca(self) -> PosePCA:
        """The finger-pose basis the hand head's coefficients live in."""
        return PosePCA(self.pca_components, self.pca_mean)

    def finger_rotations(self, out: HoNetOutput) -> torch.Tensor:
        """(B, 15, 3, 3) rotations of the 15 finger joints from the PCA coefficients."""
        return axis_angle_to_matrix(self.pose_pca.decode(out.hand_pca))

    def hand(self, hand: HandModel, out: HoNetOutput) -> HandOutput:
        """The predicted hand posed by ``hand`` (differentiable: for the losses)."""
        self._check_hand(hand)
        rots = torch.cat((out.hand_rot[:, None], self.finger_rotations(out)), 1).to(hand.dtype)
        shape = out.hand_shape.to(hand.dtype)
        return hand(rots, shape, self._trans(hand, out))

    def hand_params(self, hand: HandModel, out: HoNetOutput) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The predicted hand as ``hand``'s parameters: pose (B, 16, 3) axis-angle, shape (B, S) and
        trans (B, 3), as GeO and PiCR's hand features take them."""
        self._check_hand(hand)
        pose = torch.cat((matrix_to_axis_angle(out.hand_rot)[:, None], self.pose_pca.decode(out.hand_pca)), 1)
        return pose.to(hand.dtype), out.hand_shape.to(hand.dtype), self._trans(hand, out)

    def _check_hand(self, hand: HandModel) -> None:
        if hand.num_shape != self.config.num_shape:
            raise ValueError(f"hand has {hand.num_shape} shape coefficients, this HoNet predicts "
                             f"{self.config.num_shape}: build it with num_shape={hand.num_shape}")  # fmt: skip

    @staticmethod
    def _trans(hand: HandModel, out: HoNetOutput) -> torch.Tensor:
        """The translation that puts the shaped hand's wrist joint at ``out.hand_root``."""
        shape = out.hand_shape.to(hand.dtype)
        return out.hand_root.to(hand.dtype) - hand.shaped_rest(shape)[1][:, 0]

    @staticmethod
    def object_verts(out: HoNetOutput, canonical: torch.Tensor) -> torch.Tensor:
        """The known object's (B, N, 3) canonical vertices at the predicted pose, camera frame."""
        return canonical @ out.obj_rot.transpose(1, 2) + out.obj_trans[:, None]


def build_honet(config: str | HoNetConfig = "small", pca: PosePCA | None = None) -> HoNet:
    """A freshly initialised HoNet of a named configuration (:data:`CONFIGS`) or a
    :class:`HoNetConfig`, its pose basis ``pca`` (default: fitted on the finger poses of the
    committed grasp library's ``train`` split, :func:`miho.data.grasps.pose_pca`)."""
    if isinstance(config, str):
        if config not in CONFIGS:
            raise ValueError(f"config must be one of {sorted(CONFIGS)} or a HoNetConfig, got {config!r}")
        config = CONFIGS[config]
    if pca is None:
        from miho.data.grasps import load_library, pose_pca

        pca = pose_pca(load_library(), config.pca)
    return HoNet(config, pca)


#: the committed HoNet variants: the paper's baseline and ObMan* (HoNet fine-tuned with Hasson et
#: al.'s contact losses, Table 1)
VARIANTS = ("honet", "obman")


def asset_path(name: str = "small", variant: str = "honet") -> Path:
    """Where the committed HoNet ``name`` of ``variant`` (:data:`VARIANTS`) lives:
    ``miho/assets/<variant>_<name>.pt``."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    return ASSETS / f"{variant}_{name}.pt"


def honet_card(name: str = "small", path: str | Path | None = None, variant: str = "honet") -> dict:
    """The model card (JSON) of the committed HoNet ``name`` of ``variant`` (or of the weights at ``path``)."""
    weights = Path(path) if path is not None else asset_path(name, variant)
    card = weights.with_suffix(".json")
    if not card.exists():
        raise ValueError(f"no model card at {card}: export a trained run with `miho export honet`")
    return json.loads(card.read_text())


def load_honet(name: str = "small", device: str | torch.device = "cpu", path: str | Path | None = None,
               variant: str = "honet") -> HoNet:  # fmt: skip
    """The committed HoNet (eval mode), as ``load_hand()`` loads the hand: ``variant`` "honet" (the
    paper's baseline) or "obman" (ObMan*); ``path``: another weights file written by
    :func:`miho.train.checkpoints.export_weights` (its card beside it).

    Raises:
        ValueError: no such model, a card that does not match the weights, a corrupt file.
    """
    from miho.train.checkpoints import load_weights

    weights = Path(path) if path is not None else asset_path(name, variant)
    if not weights.exists():
        committed = sorted(p.stem for v in VARIANTS for p in ASSETS.glob(f"{v}_*.pt"))
        raise ValueError(f"no HoNet weights at {weights}: train one with `miho train honet` (committed models: "
                         f"{committed})")  # fmt: skip
    card = honet_card(path=weights)
    model = HoNet(HoNetConfig.from_dict(card["config"]))
    load_weights(model, weights, expect={"config": card["config"]})
    return model.to(device).eval()
