"""What every network configuration shares: a frozen dataclass that turns into a JSON-able dict
(stored in checkpoints and model cards) and back."""

from __future__ import annotations

import dataclasses

__all__ = ["NetConfig"]


class NetConfig:
    """Mixin of the networks' configuration dataclasses (:class:`miho.nets.picr.PiCRConfig`,
    :class:`miho.nets.honet.HoNetConfig`): tuples become lists in the dict and tuples again."""

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__.removesuffix('Config')} configuration fields {unknown}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
