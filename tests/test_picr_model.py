"""The committed PiCR model: it loads with one call, fits its card, and reproduces the figures its
card records on a fixed subset of data it never trained on."""

import json

import pytest
import torch

from miho.nets.picr import ASSETS, CONFIGS, PiCR, PiCRConfig, load_picr, picr_card
from miho.train.checkpoints import export_weights
from miho.train.picr import CHECK_SUBSET, check_figures

torch.set_num_threads(2)


def test_committed_model_loads_and_matches_its_card():
    model = load_picr()
    card = picr_card()
    assert not model.training and model.config == PiCRConfig.from_dict(card["config"]) == CONFIGS["small"]
    weights = ASSETS / card["weights"]
    assert weights.stat().st_size <= 5 * 2**20  # committed files stay under 5 MiB
    for key in ("data", "settings", "epochs", "wall_s", "machine", "commit", "history", "figures", "threshold"):
        assert key in card, key
    assert card["data"]["split"] == "train" and card["data"]["views"] >= 8
    assert card["val_data"]["split"] == "val"
    assert set(card["figures"]) == {"val", "test-seen", "test"}


def test_committed_model_reproduces_its_check_figures():
    """Tolerance 0.005 on each figure (the same fp16 weights and the same rendered samples give the
    same numbers up to float summation order)."""
    card = picr_card()
    assert card["check_subset"] == CHECK_SUBSET
    got = check_figures(load_picr())
    for k in ("precision", "recall", "f1", "best_f1", "cr_accuracy", "ae_mae"):
        assert got[k] == pytest.approx(card["check"][k], abs=5e-3), k
    assert got["vertices"] == card["check"]["vertices"]


def test_wrong_weights_are_refused(tmp_path):
    tiny = PiCR(CONFIGS["tiny"])
    path = tmp_path / "picr_x.pt"
    export_weights(tiny, path, {"config": CONFIGS["tiny"].to_dict()})
    card = {"config": CONFIGS["small"].to_dict()}  # a card that claims another configuration
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match="another config"):
        load_picr(path=path)
    with pytest.raises(ValueError, match="no PiCR model"):
        load_picr("huge")
