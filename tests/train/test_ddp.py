"""DistributedDataParallel on the CPU: two processes with the gloo backend train one model."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from train_fixtures import make_prepared

EPOCHS = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_main(rank: int, world_size: int, port: int, data: str, out: str, results: str) -> None:
    # What torchrun sets for each process it starts.
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from recolor.train import train

    result = train("gan", data, out=out, settings={
        "epochs": EPOCHS, "width": 8, "batch_size": 4, "workers": 0, "device": "cpu", "val_images": 8,
        "sample_images": 2, "steps_per_epoch": 3})
    # Each rank reports its own final weights and whether it was told about the run folder.
    state = {k: v.detach().contiguous() for k, v in result.generator.state_dict().items()}
    save_file(state, str(Path(results) / f"rank{rank}.safetensors"))
    (Path(results) / f"rank{rank}.json").write_text(json.dumps({
        "run_dir": str(result.run_dir) if result.run_dir else None, "epochs_done": result.epochs_done,
        "metrics": len(result.metrics)}))


def test_two_cpu_processes_train_one_model_with_gloo(tmp_path):
    data = make_prepared(tmp_path / "prepared", train=32, val=8)
    out = tmp_path / "runs"
    results = tmp_path / "results"
    results.mkdir()
    mp.start_processes(_rank_main, args=(2, _free_port(), str(data), str(out), str(results)), nprocs=2,
                       join=True, start_method="spawn")

    rank0 = load_file(str(results / "rank0.safetensors"))
    rank1 = load_file(str(results / "rank1.safetensors"))
    # The ranks saw different halves of the data, yet DDP averaged their gradients every step.
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    # What rank 0 wrote is that model.
    written = load_file(str(out / "gan" / "model.safetensors"))
    for key in rank0:
        assert torch.equal(written[key], rank0[key]), key

    reports = [json.loads((results / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert reports[0]["run_dir"] == str(out / "gan") and reports[1]["run_dir"] is None
    assert reports[0]["epochs_done"] == reports[1]["epochs_done"] == EPOCHS
    # Only rank 0 writes: one metrics line and one sample grid per epoch, no leftovers.
    run = out / "gan"
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]
    assert lines[-1]["batches"] == EPOCHS * 3
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch_001.png", "epoch_002.png"]
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "config.json", "export.json", "metrics.jsonl",
                                                     "model.safetensors", "openvino_model.bin", "openvino_model.xml",
                                                     "samples"]
    config = json.loads((run / "config.json").read_text())
    assert config["training"]["world_size"] == 2
    # The checkpoint keeps both ranks' augmentation generators, to resume each rank where it was.
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    assert len(checkpoint["rng"]["augment"]) == 2
