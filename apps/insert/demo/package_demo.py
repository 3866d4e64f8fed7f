"""Write an exported LDM and its codec into the app as the embedded demonstration pipeline folder
(stemforge-pipelines format, U-Net stored as float16), with a label that says what it is.

    python apps/insert/demo/package_demo.py runs/audio-demo/ldm-export runs/audio-demo/codec-final \
        --sample-decoder runs/audio-demo/codec-denoised-final --out apps/insert/src/stemforge/insert/checkpoints/demo-audio

``--sample-decoder``: a codec folder with the codec's encoder whose decoder learnt to decode the U-Net's
samples (it decodes every sampled latent; the codec keeps encoding and round trips).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
from pathlib import Path

import torch

from stemforge.codec import load_codec
from stemforge.pipelines import MultiTrackPipeline
from stemforge.pipelines.format import check_sample_decoder
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
    parser.add_argument(
        "--sample-decoder",
        type=Path,
        default=None,
        help="a codec folder with the codec's encoder whose decoder was trained on the U-Net's samples "
        "(apps/insert/demo/demo-waveform-ae-decoder-denoised.yaml); it decodes what the model samples",
    )
    parser.add_argument(
        "--task-eta",
        default="",
        metavar="TASK=ETA,...",
        help="DDIM eta of single tasks, recorded in pipeline.json (e.g. generate=0,arrange=0: "
        "apps/insert/EVALUATION.md has the measurement); the others keep eta 1",
    )
    args = parser.parse_args()
    task_eta = {}
    for item in filter(None, args.task_eta.split(",")):
        task, _, value = item.partition("=")
        task_eta[task.strip()] = float(value)
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "export"
        shutil.copytree(args.ldm, export)
        shutil.copytree(args.codec, export / "codec")
        pipe = MultiTrackPipeline.from_pretrained(export)
        sample_decoder = None
        if args.sample_decoder is not None:
            sample_decoder = load_codec(args.sample_decoder)
            check_sample_decoder(pipe.codec, sample_decoder, args.sample_decoder)
        pipe = dataclasses.replace(
            pipe,
            label=LABEL,
            segment_seconds=args.segment_seconds,
            path=args.out,
            sampler_defaults=SamplerDefaults(
                separate_steps={"cfg": args.cfg_steps, "gaussian": args.gaussian_steps},
                task_eta=task_eta or None,
            ),
            sample_decoder=sample_decoder,
        )
        pipe.save_pretrained(args.out, dtype=torch.float16)
    print(f"demonstration pipeline written to {args.out}")


if __name__ == "__main__":
    main()
