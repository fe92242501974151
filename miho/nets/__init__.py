"""The package's networks (the learning half): HoNet (§5.1) and PiCR (§5.2).

Each network file reads like torchvision's ``models/``: a configuration, its blocks, a builder,
no training code (that lives in :mod:`miho.train`)."""

from miho.nets.hand_features import HAND_FEATURES, hand_features
from miho.nets.honet import HoNet, HoNetConfig, build_honet, honet_card, load_honet
from miho.nets.picr import CONFIGS, VARIANTS, PiCR, PiCRConfig, build_picr, load_picr, picr_card

__all__ = ["CONFIGS", "HAND_FEATURES", "VARIANTS", "HoNet", "HoNetConfig", "PiCR", "PiCRConfig", "build_honet",
           "build_picr", "hand_features", "honet_card", "load_honet", "load_picr", "picr_card"]  # fmt: skip
