"""Write an exported LDM and its codec into the app as the embedded demonstration pipeline folder
(stemforge-pipelines format, U-Net stored as float16), with a label that says what it is.

    python apps/insert/demo/package_demo.py runs/audio-demo/ldm-export runs/audio-demo/codec-final \
        --out apps/insert/src/stemforge/insert/checkpoints/demo-audio
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
from pathlib import Path

import torch

from stemforge.pipelines import MultiTrackPipeline
from stemforge.pipelines.sampling import SamplerDefaults

LABEL = (
    "the demonstration audio model (a tiny MSG-LD and waveform codec trained on CPU on 64 JSB chorales "
    "rendered as piano, steel guitar, strings and electric bass)"
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("ldm", type=Path)
    parser.add_argument("codec", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--segment-seconds", type=float, default=1.28)
    parser.add_argument(
        "--cfg-steps",
        type=int,
        default=10,
        help="separate's default steps with CFG, recorded in pipeline.json (default 10: the fewest within "
        "0.2 dB SI-SDR of DDIM-200 on the held-out chorales, benchmarks/samplers/RESULTS.md)",
    )
    parser.add_argument(
        "--gaussian-steps",
        type=int,
        default=20,
        help="separate's default steps with MSDM Gaussian, recorded in pipeline.json (default 20: the fewest "
        "within 0.2 dB SI-SDR of DDIM-200 on the held-out chorales, benchmarks/samplers/RESULTS.md)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "export"
        shutil.copytree(args.ldm, export)
        shutil.copytree(args.codec, export / "codec")
        pipe = MultiTrackPipeline.from_pretrained(export)
        pipe = dataclasses.replace(
            pipe,
            label=LABEL,
            segment_seconds=args.segment_seconds,
            path=args.out,
            sampler_defaults=SamplerDefaults(
                separate_steps={"cfg": args.cfg_steps, "gaussian": args.gaussian_steps}
            ),
        )
        pipe.save_pretrained(args.out, dtype=torch.float16)
    print(f"demonstration pipeline written to {args.out}")


if __name__ == "__main__":
    main()
