"""How far instructions move the embedded JSB model's prediction of one hidden voice.

The bass of the first 32 steps of JSB test chorale 5 is hidden, soprano, alto and tenor given; for
each instruction the model's per-step distribution of the bass is computed in one call. Printed:
the expected bass pitch (mean over steps of the expectation over pitches) and the mean KL (nats per
step) from the uninstructed prediction; and the KL between the two opposite template instructions.

    python benchmarks/insert/jsb_instruction_distribution.py
"""

from __future__ import annotations

import torch

from stemforge.insert.embedded import jsb_checkpoint
from stemforge.midi import load_jsb
from stemforge.pipelines import VoiceInsertionPipeline
from stemforge.samplers.masked_discrete import masked_input

INSTRUCTIONS = (
    None,
    "bass: long held notes, high register, rising line",
    "bass: eighth-note motion, low register, falling line",
    "walking bass, mostly quarter notes",
)


def main() -> None:
    model = VoiceInsertionPipeline.from_pretrained(jsb_checkpoint())
    x = load_jsb("test")[5][None, :, :32]
    visible = torch.ones_like(x, dtype=torch.bool)
    visible[:, 3] = False
    logp = {}
    with torch.no_grad():
        for text in INSTRUCTIONS:
            cond = model.instruction_cond(text, 1) if text else None
            logp[text] = torch.log_softmax(model.network(masked_input(x, visible), visible, cond)[0, 3], -1)

    def kl(p: torch.Tensor, q: torch.Tensor) -> float:
        return float((p.exp() * (p - q)).where(torch.isfinite(p), torch.zeros_like(p)).sum(-1).mean())

    def expected_pitch(p: torch.Tensor) -> float:
        probs = p.exp().double()[:, :128]
        return float((probs * torch.arange(128, dtype=torch.float64)).sum(-1).div(probs.sum(-1)).mean())

    print("| instruction | expected bass pitch | KL from no instruction (nats/step) |")
    print("|---|---|---|")
    for text in INSTRUCTIONS:
        print(f"| {text or '(none)'} | {expected_pitch(logp[text]):.2f} | {kl(logp[text], logp[None]):.3f} |")
    print(f"KL between the two template instructions: {kl(logp[INSTRUCTIONS[1]], logp[INSTRUCTIONS[2]]):.3f}")


if __name__ == "__main__":
    main()
