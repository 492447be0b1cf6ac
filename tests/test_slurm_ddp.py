"""Multi-node pretraining the way SLURM starts it: two `rtl pretrain` processes with srun's environment
(SLURM_NTASKS, SLURM_PROCID, SLURM_NODEID, …; two "nodes" of one CPU process each, gloo DDP) train one SimCLR
encoder together, with negatives gathered across processes and with the paper's local negatives."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from rtl_core.models.backbones import build_backbone
from rtl_core.models.checkpoints import load_encoder
from rtl_core.paths import encoder_stem, output_root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("gather", [True, False], ids=["gathered negatives", "local negatives"])
def test_two_slurm_tasks_train_one_encoder(gather, tmp_path):
    study = f"slurm_{'gather' if gather else 'local'}"
    config = tmp_path / "slurm.yaml"
    config.write_text(f"""
profile: smoke
study: {study}
data: {{pool_size: 64}}
pretrain: {{pools: [ct], accelerator: cpu, devices: 1, num_nodes: 2, batch_size: 16, epochs: 1,
           gather_distributed: {str(gather).lower()}, precision: "32"}}
""")
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {
            **os.environ,
            "SLURM_NTASKS": "2",
            "SLURM_NNODES": "2",
            "SLURM_NTASKS_PER_NODE": "1",
            "SLURM_PROCID": str(rank),
            "SLURM_LOCALID": "0",
            "SLURM_NODEID": str(rank),
            "SLURM_JOB_ID": "4242",
            "SLURM_JOB_NAME": "rtl-pretrain",
            "SLURM_NODELIST": "localhost",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "rtl_core.cli", "pretrain", "--config", str(config)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outs)
    encoder, sidecar = load_encoder(encoder_stem("ct", "simclr", study))
    assert sidecar["devices"] == 2 and sidecar["study"] == study
    metrics = pd.read_csv(next((output_root() / "runs" / "pretrain" / study).rglob("metrics.csv")))
    losses = metrics.filter(like="loss").to_numpy(dtype=float).ravel()
    losses = losses[~np.isnan(losses)]  # each CSV row holds the step or the epoch loss
    assert len(losses) >= 2 and np.isfinite(losses).all() and (losses < 1e6).all()
    torch.manual_seed(42)
    untrained = build_backbone("resnet18")
    assert not torch.equal(encoder.conv1.weight, untrained.conv1.weight)  # the run changed the weights
