"""A PCA pose space for the 15 finger rotations (MANO's optional low-dimensional pose).

The basis is fitted from example poses (the synthetic grasps, or MANO's own
``hands_components``); :meth:`PosePCA.full_pose` turns (wrist, coefficients) into the (B, 16, 3)
pose that :meth:`miho.hand.HandModel.forward` takes. Poses are axis-angle in radians.

``encode``, ``decode`` and ``full_pose`` may run in every iteration of an optimiser: they look for
NaN on a CPU only (see :mod:`miho.checks`), and take inputs of any floating dtype on the basis's
device (results in the basis's dtype).
"""

from __future__ import annotations

import numbers

import torch

from miho.checks import check_device, check_tensor
from miho.hand.model import NUM_JOINTS

_D = 3 * (NUM_JOINTS - 1)


class PosePCA:
    """Linear pose space ``finger_pose = mean + coeffs @ components``.

    components: (K, 45) orthonormal rows (axis-angle of joints 1..15, flattened).
    mean: (45,).
    """

    def __init__(self, components: torch.Tensor, mean: torch.Tensor) -> None:
        check_tensor("components", components, (None, _D))
        check_tensor("mean", mean, (_D,))
        if components.shape[0] == 0:
            raise ValueError("components holds no component")
        check_device("mean", mean, components.device, "components")
        self.components, self.mean = components, mean.to(components.dtype)

    def _input(self, name: str, t: torch.Tensor, shape: tuple) -> torch.Tensor:
        check_tensor(name, t, shape, finite="cpu")
        check_device(name, t, self.components.device, "the PCA basis")
        return t.to(self.components.dtype)

    @property
    def num_components(self) -> int:
        return self.components.shape[0]

    @classmethod
    def fit(cls, finger_poses: torch.Tensor, num_components: int) -> "PosePCA":
        """Fit on (N, 15, 3) finger poses (the wrist excluded); keeps the top components."""
        check_tensor("finger_poses", finger_poses, (None, NUM_JOINTS - 1, 3))
        x = finger_poses.reshape(finger_poses.shape[0], _D)
        if x.shape[0] == 0:
            raise ValueError("finger_poses holds no pose")
        if not isinstance(num_components, numbers.Integral) or not 1 <= num_components <= min(_D, x.shape[0]):
            raise ValueError(f"num_components must be in [1, {min(_D, x.shape[0])}], got {num_components}")
        mean = x.mean(0)
        _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
        return cls(vh[:num_components], mean)

    def encode(self, finger_poses: torch.Tensor) -> torch.Tensor:
        """(B, 15, 3) -> (B, K) coefficients (orthogonal projection)."""
        x = self._input("finger_poses", finger_poses, (None, NUM_JOINTS - 1, 3))
        return (x.reshape(-1, _D) - self.mean) @ self.components.T

    def decode(self, coeffs: torch.Tensor) -> torch.Tensor:
        """(B, K) coefficients -> (B, 15, 3) finger poses."""
        coeffs = self._input("coeffs", coeffs, (None, self.num_components))
        return (self.mean + coeffs @ self.components).reshape(coeffs.shape[0], NUM_JOINTS - 1, 3)

    def full_pose(self, wrist: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
        """(B, 3) wrist axis-angle and (B, K) coefficients -> (B, 16, 3) pose."""
        wrist = self._input("wrist", wrist, (None, 3))
        check_tensor("coeffs", coeffs, (wrist.shape[0], self.num_components), finite=False)
        return torch.cat((wrist[:, None], self.decode(coeffs)), 1)
