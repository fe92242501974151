"""Input checks shared by every public entry point of the package.

Each check raises a ``ValueError`` that names the argument and says what is wrong with it (wrong
type, shape or dtype, NaN / inf, indices out of range, an empty mesh), so a bad input fails at the
door instead of deep inside torch or, worse, giving a silently wrong number. Shapes are written
as tuples whose entries are an ``int`` (that size exactly) or ``None`` (any size, zero included:
an empty batch passes and the caller returns an empty result).
"""

from __future__ import annotations

import torch

__all__ = ["check_tensor", "check_points", "check_faces", "check_mask", "check_batch", "shape_text"]


def shape_text(shape: tuple) -> str:
    """``(None, 3)`` -> ``"(*, 3)"``."""
    return "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"


def check_tensor(name: str, t, shape: tuple | None = None, *, floating: bool = True, finite: bool = True) -> None:
    """Raise ``ValueError`` unless ``t`` is a tensor of ``shape`` (None entries: any size).

    Args:
        name: the argument's name, used in the message.
        t: the value to check.
        shape: expected shape, or None for any.
        floating: the tensor must have a floating-point dtype (vertex positions, poses...).
        finite: no NaN or inf (floating tensors only).
    """
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if shape is not None and (t.dim() != len(shape) or any(s is not None and s != d for s, d in zip(shape, t.shape))):
        raise ValueError(f"{name} must have shape {shape_text(shape)}, got {tuple(t.shape)}")
    if floating and not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if finite and t.is_floating_point() and t.device.type != "meta" and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf")


def check_points(name: str, t, batch: int | None = None, count: int | None = None) -> None:
    """``t`` must be a finite floating (batch, count, 3) tensor of positions (None: any size)."""
    check_tensor(name, t, (batch, count, 3))


def check_faces(name: str, faces, num_verts: int, batch: int | None = None, allow_empty: bool = False) -> None:
    """``faces`` must be an integer (F, 3) tensor (or (batch, F, 3) when ``batch`` is given) whose
    entries index ``[0, num_verts)``; F > 0 unless ``allow_empty``."""
    shape = (None, 3) if batch is None else (batch, None, 3)
    check_tensor(name, faces, shape, floating=False)
    if faces.is_floating_point() or faces.dtype == torch.bool or faces.is_complex():
        raise ValueError(f"{name} must be an integer tensor, got {faces.dtype}")
    if faces.shape[-2] == 0 and not allow_empty:
        raise ValueError(f"{name} holds no face")
    if faces.numel() and faces.device.type != "meta":
        lo, hi = int(faces.min()), int(faces.max())
        if lo < 0 or hi >= num_verts:
            raise ValueError(f"{name} index vertices outside [0, {num_verts}) (found {lo}..{hi})")


def check_mask(name: str, mask, shape: tuple) -> None:
    """``mask`` must be a bool tensor of exactly ``shape``."""
    check_tensor(name, mask, shape, floating=False)
    if mask.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool tensor, got {mask.dtype}")


def check_batch(name: str, size: int, expected: int, what: str = "the batch") -> None:
    """A batch dimension of ``size`` where ``expected`` is needed."""
    if size != expected:
        raise ValueError(f"{name} has batch {size} but {what} has {expected}")
