"""Convert FHB's object subset (action split) into MIHO's sample format; MANO is fitted to the
annotated joints (see miho/data/real.py for layout and facts).

    python data_scripts/convert_fhb.py --root /data/fhbhands --split train --out fhb_train.npz \
        [--mano /path/to/MANO_RIGHT.pkl] [--every 1]

FHB and MANO are licensed: download them yourself; nothing here fetches them.
"""

import argparse
import sys

from miho.data.real import convert_fhb, save_converted


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, help="the FHB folder (Hand_pose_annotation_v1/, Object_models/, ...)")
    ap.add_argument("--split", default="train", choices=["train", "test"])
    ap.add_argument("--mano", default=None, help="MANO_RIGHT.pkl or its folder (else $MIHO_MANO_DIR)")
    ap.add_argument("--min-distance-mm", type=float, default=5.0, help="drop hands farther from the object")
    ap.add_argument("--fit-steps", type=int, default=300, help="Adam steps of the MANO fit to the joints")
    ap.add_argument("--every", type=int, default=1, help="keep every n-th frame")
    ap.add_argument("--out", required=True, help="output .npz")
    args = ap.parse_args(argv)
    try:
        samples, objects = convert_fhb(args.root, args.split, args.mano, args.min_distance_mm / 1000, args.fit_steps,
                                       args.every)  # fmt: skip
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"convert_fhb: error: {e}")
    save_converted(args.out, samples, objects)
    info = samples["info"]
    print(f"wrote {args.out}: {info['kept']} of {info['converted']} samples "
          f"(MANO fit: {info['fit_joint_error_mm']:.1f} mm mean joint error)")  # fmt: skip


if __name__ == "__main__":
    main()
