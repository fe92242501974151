"""The package's networks (the learning half): PiCR (§5.2) and, next, HoNet (§5.1).

Each network file reads like torchvision's ``models/``: a configuration, its blocks, a builder,
no training code (that lives in :mod:`miho.train`)."""

from miho.nets.picr import CONFIGS, PiCR, PiCRConfig, build_picr, load_picr, picr_card

__all__ = ["CONFIGS", "PiCR", "PiCRConfig", "build_picr", "load_picr", "picr_card"]
