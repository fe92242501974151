"""The committed PiCR models (the paper's and the hand-aware one): each loads with one call, fits its
card, and reproduces the figures its card records on a fixed subset of data it never trained on;
the committed hand study reproduces its check slice."""

import json

import pytest
import torch

from miho.bench import HAND_STUDY_CHECK
from miho.nets.honet import asset_path as honet_asset_path
from miho.nets.picr import ASSETS, CONFIGS, PiCR, PiCRConfig, asset_path, load_picr, picr_card
from miho.train.checkpoints import export_weights, file_origin
from miho.train.picr import CHECK_SUBSET, check_figures, hand_study, load_hand_study

torch.set_num_threads(2)


VARIANTS = ["paper", "hand_aware"]


@pytest.mark.parametrize("stage", [1, 2])
@pytest.mark.parametrize("variant", VARIANTS)
def test_committed_model_loads_and_matches_its_card(variant, stage):
    model = load_picr(variant=variant, stage=stage)
    card = picr_card(variant=variant, stage=stage)
    assert not model.training and model.config == PiCRConfig.from_dict(card["config"])
    assert model.config.name == "small" and model.config.variant == variant
    weights = ASSETS / card["weights"]
    assert weights.stat().st_size <= 5 * 2**20  # committed files stay under 5 MiB
    for key in ("data", "settings", "epochs", "wall_s", "machine", "commit", "history", "figures", "threshold"):
        assert key in card, key
    assert card["data"]["split"] == "train" and card["data"]["views"] >= 8
    assert card["val_data"]["split"] == "val"
    assert set(card["figures"]) == {"val", "test-seen", "test"}
    assert card["stage"] == stage
    if stage == 2:  # Supp D.1: the committed stage-1 model fine-tuned on the committed HoNet's predictions
        assert card["task"]["init"]["sha256"] == file_origin(asset_path("small", variant, 1))["sha256"]
        assert card["task"]["honet"]["sha256"] == file_origin(honet_asset_path("small"))["sha256"]
        assert card["stage1"]["figures"] == picr_card(variant=variant, stage=1)["figures"]
        assert set(card["figures_disturbed"]) == {"val", "test-seen", "test"}


@pytest.mark.parametrize("stage", [1, 2])
@pytest.mark.parametrize("variant", VARIANTS)
def test_committed_model_reproduces_its_check_figures(variant, stage):
    """Tolerance 0.005 on each figure (the same fp16 weights and the same rendered samples give the
    same numbers up to float summation order)."""
    card = picr_card(variant=variant, stage=stage)
    assert card["check_subset"] == CHECK_SUBSET
    got = check_figures(load_picr(variant=variant, stage=stage))
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


def test_committed_hand_study_reproduces_its_check_slice():
    """The committed study's check slice (:data:`miho.bench.HAND_STUDY_CHECK`), re-run with the
    committed models, within 0.005 on every figure; and the study's own shape: every predictor at
    every scale on both test splits, the paper's PiCR the same at every scale (it reads no hand)."""
    committed = load_hand_study()
    assert committed["check_subset"] == HAND_STUDY_CHECK
    models = {"PiCR (paper)": load_picr(stage=1), "hand-aware PiCR": load_picr(variant="hand_aware", stage=1)}
    again = hand_study(models, committed["thresholds"], progress=False, **HAND_STUDY_CHECK)
    for split, res in again.items():
        for new, old in zip(res["rows"], committed["check"][split]["rows"], strict=True):
            assert (new["scale"], new["predictor"]) == (old["scale"], old["predictor"])
            for k in ("f1", "cr_accuracy", "ae_mae", "precision", "recall"):
                assert new[k] == pytest.approx(old[k], abs=5e-3), (split, new["predictor"], k)
    for split in ("test-seen", "test"):
        rows = committed["study"][split]["rows"]
        assert {(r["scale"], r["predictor"]) for r in rows} == {
            (k, p) for k in (0.0, 0.5, 1.0, 2.0, 4.0) for p in ("heuristic", *models)
        }
        assert len({r["f1"] for r in rows if r["predictor"] == "PiCR (paper)"}) == 1
