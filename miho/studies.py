"""The paper's ablations (§6.4, Supp D.2) over a SynthHO split, into one results file, and their
tables: what ``miho bench ablation`` runs and the ablations chapter reads.

:func:`run_ablations` refines the same samples under every GeO setting of :data:`RUNS` (the
studies of :mod:`miho.experiments`), a chunk of samples at a time, and keeps every sample's metrics
(HE, OE, PD, SIV, DD; the pose measures of Figs. 7 and 15) in a JSON file rewritten atomically
after each chunk: an interrupted run resumes, and a test can re-run a slice of a committed file
and compare it sample by sample (GeO's result for a sample does not depend on its batch).
:func:`study_tables` turns such a file into Tables 2, 3, 5, 6 and the measures of Figs. 7 and 15.

Three kinds of start (:data:`START_OF_RUN`): ``"estimate"``, the study's start (HoNet's estimate
or the disturbed grasp, :data:`miho.experiments.START_KINDS`); ``"flat"``, the same with flat
fingers (Fig. 7); ``"twisted"``, the true grasp with a twisted thumb (Fig. 15). Every run is
driven by the same kind of field (:data:`miho.experiments.FIELDS`).
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from miho import experiments as ex
from miho import files, geo
from miho.hand import FINGERS, load_hand
from miho.tables import markdown_table

__all__ = ["RUNS", "START_OF_RUN", "STUDIES", "TABLE2_RUNS", "TITLES", "run_ablations", "runs_of", "study_runs",
           "study_tables"]  # fmt: skip

#: the runs of Table 2 (contact terms): timed one sample at a time too
TABLE2_RUNS = ("CPF (full)", "vanilla contact", "ObMan contact")


def runs_of(pose_pca) -> dict[str, tuple[str, dict]]:
    """Every run: name -> (start kind, :class:`miho.geo.GeOConfig` overrides). ``pose_pca``: the PCA
    basis of Table 6 (HoNet's, ``honet.pose_pca``). k_rpl = 1e-3 is ``"CPF (full)"`` (not run twice)."""
    runs = {name: ("estimate", o) for name, o in ex.ABLATIONS.items()}
    sweep = ex.k_rpl_settings([k for k in ex.K_RPL_SWEEP if k != geo.GeOConfig.k_rpl])
    runs.update({name: ("estimate", o) for name, o in sweep.items()})
    runs["PCA pose"] = ("estimate", {"pose_pca": pose_pca})
    runs.update({f"flat, {name}": ("flat", o) for name, o in ex.ANATOMY.items()})
    runs.update({f"twisted, {name}": ("twisted", o) for name, o in ex.ANATOMY.items()})
    return runs


#: the run names of :func:`runs_of` (the basis does not change them)
RUNS = tuple(runs_of(None))
#: the start kind of each run
START_OF_RUN = {name: kind for name, (kind, _) in runs_of(None).items()}
#: the runs of each study (``miho bench ablation --studies``); "CPF (full)" is every estimate
#: study's reference (k_rpl = 1e-3, the full pose) and always runs
STUDIES = {
    "contact": ("CPF (full)", *(r for r in ex.ABLATIONS if r != "CPF (full)")),  # Tables 2, 3
    "k_rpl": ("CPF (full)", *(r for r in RUNS if r.startswith("k_rpl"))),  # Table 5
    "pose": ("CPF (full)", "PCA pose"),  # Table 6
    "anatomy": ("CPF (full)", *(r for r in RUNS if r.startswith("flat"))),  # Fig. 7
    "twist": ("CPF (full)", *(r for r in RUNS if r.startswith("twisted"))),  # Fig. 15
}


def study_runs(studies) -> tuple[str, ...]:
    """The runs of some :data:`STUDIES` (names), in :data:`RUNS` order."""
    unknown = sorted(set(studies) - set(STUDIES))
    if unknown or not studies:
        raise ValueError(f"studies must be some of {tuple(STUDIES)}, got {list(studies)}")
    wanted = {r for s in studies for r in STUDIES[s]}
    return tuple(r for r in RUNS if r in wanted)


#: the rows a results file holds besides the runs: the truth and each kind of start
_STARTS = {"estimate": "start", "flat": "flat hand", "twisted": "twisted thumb"}


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).parent)  # fmt: skip
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _extras(hand, kind: str, pose: torch.Tensor, shape: torch.Tensor,
            truth_pose: torch.Tensor | None = None) -> dict[str, list[float]]:  # fmt: skip
    """The pose measures of a row: Fig. 7's for flat starts, Fig. 15's for twisted ones."""
    if kind == "flat":
        a = ex.pose_abnormality(hand, pose, shape)
        out = {"L_anat": a["L_anat"], "worst violation": a["worst violation"]}
        out.update({f"{f} twist": a["finger twist"][:, k] for k, f in enumerate(FINGERS)})
    elif kind == "twisted":
        out = {"thumb twist": ex.twist_degrees(hand, pose, shape=shape)}
        if truth_pose is not None:
            out["truth thumb twist"] = ex.twist_degrees(hand, truth_pose, shape=shape)
    else:
        return {}
    return {k: v.detach().double().cpu().tolist() for k, v in out.items()}


def run_ablations(out: str | Path, field: str = "predicted", start: str = "honet", split: str = "test-seen",
                  samples: int | list[int] = 32, chunk: int = 8, iterations: int = 400, resolution: int = 80,
                  runs: tuple[str, ...] = RUNS, twist: float = 30.0, device: str = "cpu", honet_path=None,
                  picr_path=None, single_iterations: int = 50, progress: bool = True, command: str = "",
                  stride: int = 1) -> dict:  # fmt: skip
    """Run the ablations into ``out`` (JSON; resumed when it exists with the same settings).

    Args:
        field: :data:`miho.experiments.FIELDS`. start: :data:`miho.experiments.START_KINDS`.
        split, samples: the SynthHO split and how many of its samples (one view a grasp), spread
            evenly over it (``samples`` <= 0: all), or a list of their indices (a slice of a run).
        stride: with ``samples`` a number, keep every ``stride``-th of those (the same starts as
            a run over all of them, fewer samples).
        chunk: samples refined together. iterations, resolution: GeO's; SIV voxels per axis.
        runs: the runs of :data:`RUNS` to make. twist: degrees added to each twisted thumb joint.
        honet_path, picr_path: weights files of the networks (default the committed ones).
        single_iterations: the Table 2 runs are also timed on one sample alone, over this many
            iterations (0: not).
        command: the command line, kept in the file.

    Returns:
        the results (what the file holds): ``provenance``, ``samples`` (indices into the split),
        ``chunks_done``, ``per_sample`` (row -> metric -> a value a sample done), ``seconds``
        (run -> GeO seconds summed over the chunks), ``single_ms`` (run -> ms per iteration, one
        sample alone).
    """
    from miho.nets import honet as honet_mod
    from miho.nets import picr as picr_mod
    from miho.train.checkpoints import file_origin
    from miho.train.picr_data import build_picr_data

    if field not in ex.FIELDS:
        raise ValueError(f"field must be one of {ex.FIELDS}, got {field!r}")
    if start not in ex.START_KINDS:
        raise ValueError(f"start must be one of {ex.START_KINDS}, got {start!r}")
    unknown = sorted(set(runs) - set(RUNS))
    if unknown or not runs:
        raise ValueError(f"runs must be some of {RUNS}, got {list(runs)}")
    if chunk < 1 or iterations < 1 or stride < 1:
        raise ValueError(f"chunk, iterations and stride must be positive, got {chunk}, {iterations}, {stride}")
    hand = load_hand(device=device)
    honet = honet_mod.load_honet(device=device, path=honet_path)
    picr = picr_mod.load_picr(device=device, path=picr_path)
    data = build_picr_data(split, views=1, size=honet.config.image_size, workers=0, progress=progress)
    if isinstance(samples, int):
        n = len(data) if samples <= 0 else min(samples, len(data))
        idx = torch.linspace(0, len(data) - 1, n).round().long()[::stride]
    else:
        idx = torch.as_tensor(list(samples), dtype=torch.long)
        if idx.numel() == 0 or int(idx.min()) < 0 or int(idx.max()) >= len(data):
            raise ValueError(f"samples must be indices into the {len(data)} samples of {split}, got {idx.tolist()}")
    settings = dict(field=field, start=start, split=split, samples=idx.tolist(), chunk=chunk, iterations=iterations,
                    resolution=resolution, runs=list(runs), twist=twist)  # fmt: skip
    out = Path(out)
    if out.exists():
        result = json.loads(out.read_text())
        if result["settings"] != settings:
            raise ValueError(f"{out} holds a run with other settings ({result['settings']}); use another path")
    else:
        result = dict(settings=settings, provenance=dict(
            command=command, commit=_git_commit(), machine=f"{platform.machine()}, {torch.get_num_threads()} threads",
            device=str(device), torch=torch.__version__, honet=file_origin(honet_path or honet_mod.asset_path()),
            picr=file_origin(picr_path or picr_mod.asset_path()),
            picr_threshold=None, started=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())),
            chunks_done=0, per_sample={}, seconds={}, single_ms={})  # fmt: skip
    spec = runs_of(honet.pose_pca)
    kinds = sorted({START_OF_RUN[r] for r in runs})
    parts = idx.split(chunk)
    bar = tqdm(total=len(parts), initial=result["chunks_done"], desc="ablations", disable=not progress)
    for c in range(result["chunks_done"], len(parts)):
        b = data.batch(parts[c], device)
        est = (ex.honet_starts(hand, b, field, honet, picr) if start == "honet"
               else ex.disturbed_starts(hand, b, field, picr))  # fmt: skip
        result["provenance"]["picr_threshold"] = est.t_vc if field == "predicted" else None
        starts = {"estimate": est}
        if "flat" in kinds:
            starts["flat"] = ex.flat_starts(est)
        if "twisted" in kinds:
            starts["twisted"] = ex.twisted_starts(hand, b, twist, field, picr)
        rows: dict[str, dict] = {}
        for kind, st in starts.items():
            study = ex.ablation_study(hand, st, {r: spec[r][1] for r in runs if START_OF_RUN[r] == kind},
                                      iterations=iterations, resolution=resolution, keep_results=True)  # fmt: skip
            rows.setdefault("ground truth", study.truth.columns)
            rows[_STARTS[kind]] = {**study.start.columns, **_extras(hand, kind, st.pose, st.shape, st.truth_pose)}
            for r, table in study.runs.items():
                res = study.results[r]
                rows[r] = {**table.columns, **_extras(hand, kind, res.pose.to(hand.device), res.shape.to(hand.device))}
                result["seconds"][r] = result["seconds"].get(r, 0.0) + study.ms_per_iteration[r] * iterations / 1e3
        if c == 0 and single_iterations:
            one = est.take(slice(0, 1))
            for r in (r for r in TABLE2_RUNS if r in runs):
                t0 = time.perf_counter()
                geo.optimize(hand, one.pose, one.objects, one.field, trans=one.trans, shape=one.shape,
                             iterations=single_iterations, mode="hand-object", t_vc=one.t_vc, **spec[r][1])  # fmt: skip
                if str(device).startswith("cuda"):
                    torch.cuda.synchronize()
                result["single_ms"][r] = (time.perf_counter() - t0) / single_iterations * 1e3
        for name, cols in rows.items():
            mine = result["per_sample"].setdefault(name, {})
            for k, v in cols.items():
                mine.setdefault(k, []).extend(v.tolist() if torch.is_tensor(v) else v)
        result["chunks_done"] = c + 1
        with files.atomic_write(out, suffix=".json") as tmp:
            Path(tmp).write_text(json.dumps(result))
        bar.update(1)
    bar.close()
    return result


#: what each table of :func:`study_tables` shows (the paper's numbering)
TITLES = {
    "table2": "Table 2: contact terms (CPF, vanilla contact, ObMan contact), GeO's time",
    "table3": "Table 3: with and without the repulsive springs E_rpl",
    "table5": "Table 5: the elasticity k_rpl of the repulsive springs",
    "table6": "Table 6: GeO on the full pose (15 joint rotations, L_anat) or on 15 PCA components",
    "fig7": "Fig. 7: GeO from a flat hand with and without L_anat (abnormality of the poses)",
    "fig15": "Fig. 15: unwanted twist correction (twist added to the thumb's MCP and IP joints)",
}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def study_tables(result: dict) -> dict[str, str]:
    """Markdown tables of a :func:`run_ablations` result (means over its samples; mm, cm^3,
    degrees), by study: ``"table2"`` (contact terms, with ms per iteration per sample in the
    chunk and alone), ``"table3"`` (E_rpl), ``"table5"`` (k_rpl), ``"table6"`` (pose space),
    ``"fig7"`` (flat starts: HE, PD, DD, L_anat, the worst limit violation, each finger's twist),
    ``"fig15"`` (twisted thumbs: HE, PD, the thumb's twist). A study whose runs are missing is
    left out."""
    per, n = result["per_sample"], len(next(iter(result["per_sample"].values()))["HE"])
    cols = ("HE", "OE", "PD", "SIV", "DD")
    heads = [f"{c} ({'cm^3' if c == 'SIV' else 'mm'})" for c in cols]
    rpl = ex.k_rpl_settings()
    alias = {f"k_rpl = {geo.GeOConfig.k_rpl:.1e}": "CPF (full)", "with E_rpl": "CPF (full)", "full pose": "CPF (full)"}

    def row(label: str, name: str, keys=cols) -> list:
        name = alias.get(name, name)
        return [label, *(_mean(per[name][k]) for k in keys)]

    def have(*names) -> bool:
        return all(alias.get(x, x) in per for x in names)

    tables = {}
    start = {"honet": "HoNet's estimate", "disturbed": "disturbed start"}[result["settings"]["start"]]
    base = [row("ground truth", "ground truth"), row(start, "start")]
    if have(*TABLE2_RUNS):
        ms = lambda r: result["seconds"][r] * 1e3 / (result["settings"]["iterations"] * n)  # noqa: E731
        body = [[*row(r, r), ms(r), result["single_ms"].get(r)] for r in TABLE2_RUNS]
        h = ["setting", *heads, "ms / iteration / sample (chunk)", "ms / iteration (one sample)"]
        tables["table2"] = markdown_table(h, [b + [None, None] for b in base] + body)
    if have("CPF (full)", "CPF without E_rpl"):
        body = [row("with E_rpl", "CPF (full)"), row("without E_rpl", "CPF without E_rpl")]
        tables["table3"] = markdown_table(["setting", *heads], [*base, *body])
    if have(*rpl):
        tables["table5"] = markdown_table(["k_rpl", *heads], [row(name.split(" = ")[1], name) for name in rpl])
    if have("CPF (full)", "PCA pose"):
        body = [row("full pose (15 rotations, L_anat)", "full pose"), row("PCA pose (15 components)", "PCA pose")]
        tables["table6"] = markdown_table(["setting", *heads], [*base, *body])
    fig7 = ("HE", "PD", "DD", "L_anat", "worst violation", *(f"{f} twist" for f in FINGERS))
    if have("flat, with L_anat", "flat, without L_anat"):
        h = ["start / setting", "HE (mm)", "PD (mm)", "DD (mm)", "L_anat (rad)", "worst violation (deg)",
             *(f"{f} twist (deg)" for f in FINGERS)]  # fmt: skip
        tables["fig7"] = markdown_table(
            h, [row(r, r, fig7) for r in ("flat hand", *(f"flat, {a}" for a in ex.ANATOMY))]
        )
    if have("twisted, with L_anat", "twisted, without L_anat"):
        h = ["start / setting", "HE (mm)", "PD (mm)", "thumb twist (deg)"]
        body = [
            row(r, r, ("HE", "PD", "thumb twist")) for r in ("twisted thumb", *(f"twisted, {a}" for a in ex.ANATOMY))
        ]
        truth = [
            "ground truth",
            0.0,
            _mean(per["ground truth"]["PD"]),
            _mean(per["twisted thumb"]["truth thumb twist"]),
        ]
        tables["fig15"] = markdown_table(h, [truth, *body])
    return tables
