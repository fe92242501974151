"""Convert HO3D v2 into MIHO's sample format (see miho/data/real.py for layout and facts).

    python data_scripts/convert_ho3d.py --root /data/HO3D_v2 --ycb /data/YCB_models \
        --split train --out ho3d_train.npz [--mano /path/to/MANO_RIGHT.pkl]
    python data_scripts/convert_ho3d.py ... --split evaluation --minus --out ho3d_v2minus.npz

HO3D and MANO are licensed: download them yourself; nothing here fetches them.
"""

import argparse
import sys

from miho.data.real import HO3DV2_MINUS, convert_ho3d, save_converted


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, help="the HO3D_v2 folder (train/, evaluation/, train.txt, ...)")
    ap.add_argument("--ycb", required=True, help="YCB models folder (<objName>/textured_simple.obj)")
    ap.add_argument("--split", default="train", choices=["train", "evaluation"])
    ap.add_argument("--minus", action="store_true", help="keep only the paper's HO3Dv2- frames (Supp Table 4)")
    ap.add_argument("--mano", default=None, help="MANO_RIGHT.pkl or its folder (else $MIHO_MANO_DIR)")
    ap.add_argument("--min-distance-mm", type=float, default=5.0, help="drop hands farther from the object")
    ap.add_argument("--out", required=True, help="output .npz")
    args = ap.parse_args(argv)
    try:
        samples, objects = convert_ho3d(args.root, args.ycb, args.split, args.mano,
                                        HO3DV2_MINUS if args.minus else None, args.min_distance_mm / 1000)  # fmt: skip
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"convert_ho3d: error: {e}")
    save_converted(args.out, samples, objects)
    info = samples["info"]
    print(f"wrote {args.out}: {info['kept']} of {info['converted']} samples, {len(objects)} objects")


if __name__ == "__main__":
    main()
