"""The Metrics aggregate across processes: two real gloo processes, each updating with half the data,
compute the same values as one process that sees everything."""

import json
import socket
import subprocess
import sys
import textwrap

import pytest
import torch

from stemforge.metrics import FrechetAudioDistance, SISDRi

RATE = 1000

DATA = """
import torch
gen = torch.Generator().manual_seed(0)
real, fake = torch.randn(120, 6, generator=gen) * 2, torch.randn(80, 6, generator=gen) + 1
refs = torch.randn(4, 3, 9000, generator=gen)
ests = refs + 0.3 * torch.randn(refs.shape, generator=gen)
"""

WORKER = (
    DATA
    + """
import json, os, sys
import torch.distributed as dist
from stemforge.metrics import FrechetAudioDistance, SISDRi
rank, port = int(sys.argv[1]), sys.argv[2]
os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", port
dist.init_process_group("gloo", rank=rank, world_size=2)
fad = FrechetAudioDistance(num_features=6, embedder_name="precomputed")
fad.update(real[rank::2], real=True)
fad.update(fake[rank * 40 : (rank + 1) * 40], real=False)
sisdri = SISDRi(("a", "b", "c"), 1000)
sisdri.update(ests[rank * 2 : (rank + 1) * 2], refs[rank * 2 : (rank + 1) * 2])
score = fad.compute()
print(json.dumps({"fad": score.value, "n_ref": score.num_reference, "n_eval": score.num_evaluated,
                  "sisdri": sisdri.compute()}))
dist.destroy_process_group()
"""
)


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(rank), str(port)], stdout=subprocess.PIPE, text=True
        )
        for rank in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    results = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    scope: dict = {}
    exec(DATA, scope)
    fad = FrechetAudioDistance(num_features=6, embedder_name="precomputed")
    fad.update(scope["real"], real=True)
    fad.update(scope["fake"], real=False)
    single = fad.compute()
    sisdri = SISDRi(("a", "b", "c"), RATE)
    sisdri.update(scope["ests"], scope["refs"])
    single_sisdri = sisdri.compute()
    for result in results:
        assert result["fad"] == pytest.approx(single.value, rel=1e-9)
        assert (result["n_ref"], result["n_eval"]) == (120, 80)
        for key, value in single_sisdri.items():
            assert result["sisdri"][key] == pytest.approx(value, rel=1e-9)
    assert torch.is_tensor(scope["real"])
