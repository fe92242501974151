"""The package's networks (the learning half): PiCR (§5.2) and, next, HoNet (§5.1).

Each network file reads like torchvision's ``models/``: a configuration, its blocks, a builder,
no training code (that lives in :mod:`miho.train`)."""

from miho.nets.hand_features import HAND_FEATURES, hand_features
from miho.nets.picr import CONFIGS, VARIANTS, PiCR, PiCRConfig, build_picr, load_picr, picr_card

__all__ = ["CONFIGS", "HAND_FEATURES", "VARIANTS", "PiCR", "PiCRConfig", "build_picr", "hand_features", "load_picr",
           "picr_card"]  # fmt: skip
