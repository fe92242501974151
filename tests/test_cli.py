"""The ``miho`` command."""

import json

import pytest

from miho.cli import main


def test_info(capsys):
    main(["info"])
    out = capsys.readouterr().out
    assert "V=1609" in out and "anchors: 32" in out and "palm 4, carpal 3" in out


def test_bench_hand(capsys):
    main(["bench", "hand", "--batch", "4", "--repeats", "1"])
    assert "batch 4, cpu" in capsys.readouterr().out


def test_bench_geo_and_siv(capsys):
    main(["bench", "geo", "--batches", "1,3", "--iterations", "2", "--loop", "--loop-samples", "2"])
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| 3")]
    assert [r.split(" |")[0] for r in rows] == ["| 3", "| 3 (one at a time, 2 timed)"]
    main(["bench", "siv", "--batch", "2", "--resolution", "16"])
    assert "SIV at 16^3: batch 2, cpu" in capsys.readouterr().out


def test_bench_ablation_prints_the_tables_rows(capsys, tmp_path):
    """``miho bench ablation`` at tiny size: the truth-field study from disturbed starts prints Tables 2, 3
    and 5 with their rows, and writes its results file."""
    out = tmp_path / "ablation.json"
    main(["bench", "ablation", "--field", "truth", "--start", "disturbed", "--split", "test", "--batch", "4",
          "--stride", "2", "--chunk", "2", "--studies", "contact,k_rpl", "--geo-iterations", "2", "--resolution", "8",
          "--out", str(out)])  # fmt: skip
    text = capsys.readouterr().out
    rows = [r.split(" | ")[0] for r in text.splitlines() if r.startswith("| ")]
    assert rows[:6] == ["| setting", "| ground truth", "| disturbed start", "| CPF (full)", "| vanilla contact",
                        "| ObMan contact"]  # fmt: skip
    assert rows[-8:] == ["| k_rpl"] + [f"| {k}" for k in ("2.0e-04", "6.0e-04", "1.0e-03", "1.4e-03", "2.0e-03",
                                                           "4.0e-03", "8.0e-03")]  # fmt: skip
    assert "Table 3" in text and "Table 6" not in text
    n = 262  # SynthHO test samples at one view a grasp: every second of 4 spread over them
    assert json.loads(out.read_text())["settings"]["samples"] == [0, round(2 * (n - 1) / 3)]


def test_missing_mano_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("MIHO_MANO_DIR", raising=False)
    with pytest.raises(SystemExit, match="MIHO_MANO_DIR"):
        main(["info", "--hand", "mano", "--mano-path", str(tmp_path)])


def test_synth_objects_lists_the_library(capsys):
    main(["synth", "objects", "--random-objects", "2"])
    out = capsys.readouterr().out
    assert "| mug | train |" in out and "| random_001 |" in out and "held out for test" in out


def test_synth_grasps_builds_a_small_library(tmp_path, capsys):
    out = tmp_path / "lib.npz"
    main(["synth", "grasps", "--random-objects", "0", "--candidates", "1", "--iterations", "3", "--batch", "32",
          "--workers", "1", "--out", str(out)])  # fmt: skip
    text = capsys.readouterr().out
    assert out.exists() and f"wrote {out}" in text and "candidates 25" in text


def test_bench_render_and_synth(capsys):
    main(["bench", "render", "--batch", "8", "--workers", "1"])
    assert "rendering" in capsys.readouterr().out
    main(["bench", "synth", "--batch", "2", "--geo-iterations", "3"])
    assert "2 candidates, 3 GeO iterations" in capsys.readouterr().out
