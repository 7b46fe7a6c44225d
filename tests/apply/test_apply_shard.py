"""Splitting one apply run: --shard K/N and torchrun's ranks, in processes of their own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import recolor
from apply_fixtures import save_gray, tiny_model
from recolor.cli import app
from recolor.engine.torch_device import TorchEngine
from recolor.apply.pipeline import ApplyOptions, colorize_files
from recolor.apply.plan import plan_jobs
from recolor.errors import UsageError
from recolor.apply.shard import Launch, Shard, combine, launch_from_env, parse_shard, split_plan

PHOTOS = 7


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("model") / "tiny")


def album(root: Path, count: int = PHOTOS) -> Path:
    for index in range(count):
        save_gray(root / "album" / ("sub" if index % 3 == 0 else "") / f"p{index}.png", 40, 30, seed=index)
    return root / "album"


def test_parse_shard_takes_k_of_n_and_refuses_the_rest():
    assert parse_shard("2/8") == Shard(1, 8) and str(parse_shard(" 1 / 3 ")) == "1/3"
    for text in ("0/2", "3/2", "2", "a/b", "1/0", "-1/2"):
        with pytest.raises(UsageError):
            parse_shard(text)


def test_parts_cover_every_photo_once_whatever_is_done_already(tmp_path):
    folder = album(tmp_path, 10)
    out = tmp_path / "out"
    fresh = plan_jobs([str(folder)], out=out)
    for count in (1, 2, 3, 4):
        parts = [split_plan(fresh, Shard(index, count)) for index in range(count)]
        outputs = [job.output for part in parts for job in part.jobs]
        assert sorted(outputs) == sorted(job.output for job in fresh.jobs)  # each once
        assert max(len(p.jobs) for p in parts) - min(len(p.jobs) for p in parts) <= 1
    # Some outputs done (by any part): each part still owns the same photos, done or not.
    done = sorted(job.output for job in fresh.jobs)[::3]
    for path in done:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"done")
    later = plan_jobs([str(folder)], out=out)
    for index in range(3):
        before, after = split_plan(fresh, Shard(index, 3)), split_plan(later, Shard(index, 3))
        assert {j.output for j in before.jobs} == {j.output for j in after.jobs + after.skipped}
        assert {j.output for j in after.skipped} == set(done) & {j.output for j in before.jobs}


def test_a_shard_split_again_by_ranks_is_one_finer_split(tmp_path):
    plan = plan_jobs([str(album(tmp_path, 12))], out=tmp_path / "out")
    for outer in range(2):
        for rank in range(3):
            nested = split_plan(split_plan(plan, Shard(outer, 2)), Shard(rank, 3))
            assert [j.output for j in nested.jobs] == [j.output for j in split_plan(plan, combine(
                Shard(outer, 2), Shard(rank, 3))).jobs]


def test_launch_from_env_reads_torchruns_variables():
    assert launch_from_env({}) is None and launch_from_env({"WORLD_SIZE": "1", "RANK": "0"}) is None
    assert launch_from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}) == \
        Launch(rank=3, world_size=4, local_rank=1, local_world_size=2)
    for bad in ({"WORLD_SIZE": "2"}, {"WORLD_SIZE": "2", "RANK": "2"}, {"WORLD_SIZE": "two", "RANK": "0"}):
        with pytest.raises(UsageError):
            launch_from_env(bad)


def _env() -> dict[str, str]:
    source = str(Path(recolor.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _apply_command(folder: Path, out: Path, model: Path, *extra: str) -> list[str]:
    return [str(folder), "--model", str(model), "--out", str(out), "--render-size", "64", "--batch-size", "2", *extra]


def _done(text: str) -> tuple[int, int]:
    match = re.search(r"done (\d+), skipped (\d+), failed 0", text)
    assert match, text
    return int(match[1]), int(match[2])


# Three processes that each import torch: seconds on an idle machine, minutes on a loaded one.
@pytest.mark.timeout(900)
def test_two_processes_with_shard_1_2_and_2_2_do_every_photo_once_and_each_resumes(tmp_path, model):
    folder, out = album(tmp_path), tmp_path / "out"
    runs = [subprocess.Popen([sys.executable, "-m", "recolor", "apply", *_apply_command(folder, out, model),
                              "--shard", f"{k}/2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=_env()) for k in (1, 2)]
    outputs = [run.communicate(timeout=800) for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    done = [_done(stdout) for stdout, _ in outputs]
    assert [f"part {k}/2:" in stdout for k, (stdout, _) in zip((1, 2), outputs)] == [True, True]
    assert sorted(d for d, _ in done) == [PHOTOS // 2, PHOTOS - PHOTOS // 2]  # each photo in one part only
    written = sorted(p.relative_to(out) for p in out.rglob("*.png"))
    assert len(written) == PHOTOS and written == sorted(p.relative_to(folder) for p in folder.rglob("*.png"))  # one folder: straight into --out
    # Each part resumes on its own: part 2 redoes the one of its outputs that went missing, part 1
    # finds all of its own done (in this process: the CLI is the same).
    second = split_plan(plan_jobs([str(folder)], out=out), Shard(1, 2))
    second.skipped[0].output.unlink()
    again = CliRunner().invoke(app, ["apply", *_apply_command(folder, out, model), "--shard", "2/2"])
    assert again.exit_code == 0 and _done(again.stdout) == (1, len(second.skipped) - 1)
    first = CliRunner().invoke(app, ["apply", *_apply_command(folder, out, model), "--shard", "1/2"])
    assert first.exit_code == 0 and "nothing to do" in first.stdout and "part 1/2" in first.stdout


@pytest.mark.timeout(900)
def test_torchrun_ranks_split_the_run_and_rank_0_prints_one_summary(tmp_path, model):
    folder, out = album(tmp_path), tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "recolor", "apply", *_apply_command(folder, out, model, "--device", "cpu")],
                         capture_output=True, text=True, env=_env(), timeout=800)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("done ") == 1 and "2 processes:" in run.stdout
    assert _done(run.stdout) == (PHOTOS, 0)
    assert len(list(out.rglob("*.png"))) == PHOTOS


def test_the_join_on_the_networks_device_gives_the_cpu_joins_colors(tmp_path, model):
    """The --device cuda path (shrink, network and join in torch on the device), run on the CPU."""
    from recolor.hub.registry import load_model

    folder = album(tmp_path, 3)
    save_gray(folder / "wide.jpg", 90, 40, seed=9, quality=95)
    generator, _ = load_model(str(model), device="cpu")
    colorizer = TorchEngine(generator, __import__("torch").device("cpu"), precision="fp32")
    images = {}
    for where in ("cpu", "network"):
        plan = plan_jobs([str(folder)], out=tmp_path / where)
        results = colorize_files(plan.jobs, colorizer, options=ApplyOptions(render_size=64, join_device=where))
        assert all(r.error is None for r in results) and len(results) == 4
        images[where] = {job.output.relative_to(tmp_path / where): np.asarray(__import__("PIL.Image").Image.open(
            job.output).convert("RGB")).astype(int) for job in plan.jobs}
    for name, cpu in images["cpu"].items():
        device = images["network"][name]
        assert device.shape == cpu.shape
        # Only the shrink differs (torch's antialiased bicubic, unrounded, against Pillow's).
        assert np.abs(device - cpu).mean() < 1.5, name
        assert np.abs(cpu[..., 0] - cpu[..., 2]).mean() > 2  # colored, so the comparison means something
    with pytest.raises(UsageError):
        colorize_files(plan.jobs, colorizer, options=ApplyOptions(join_device="gpu"))
