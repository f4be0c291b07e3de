"""groklab from Python against the CLI: the same metrics and weights, errors as exceptions with
the CLI's messages, Ctrl-C that checkpoints and resumes exactly, the GIL released."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import groklab

ROOT = Path(__file__).resolve().parents[2]


def cli() -> Path:
    """The `groklab` binary `cargo build --release` wrote (CI builds it before these tests)."""
    path = Path(os.environ.get("GROKLAB_BIN", ROOT / "target" / "release" / "groklab"))
    if not path.exists():
        pytest.skip(f"{path} not built: run `cargo build --release` first")
    return path


def rows_without_wall(path: Path) -> list:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows:
        r.pop("wall_s")
    return rows


def read_safetensors(path: Path) -> dict:
    """Every tensor of a safetensors file, parsed here from the format itself (8-byte header
    length, JSON header, raw little-endian data), independently of groklab."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    dtypes = {"F64": "<f8", "F32": "<f4", "I64": "<i8", "BOOL": "?", "U8": "u1"}
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        lo, hi = t["data_offsets"]
        out[name] = np.frombuffer(body[lo:hi], dtype=dtypes[t["dtype"]]).reshape(t["shape"])
    return out


def test_presets_and_config():
    names = groklab.presets()
    assert "quick" in names and "nanda2023" in names and "Nanda" in names["nanda2023"]
    c = groklab.config("quick", train__lr=0.003, set={"model.d_mlp": 64})
    assert c["train"]["lr"] == 0.003 and c["model"]["d_mlp"] == 64
    assert c["task"]["name"] == "add"


def test_bad_input_raises_the_cli_message():
    with pytest.raises(ValueError, match=r"did you mean `model.d_model`"):
        groklab.config("quick", set={"model.d_modle": 3})
    with pytest.raises(ValueError, match=r"train.lr"):
        groklab.config("quick", train__lr=-1)
    with pytest.raises(ValueError, match=r"quick"):
        groklab.config("no_such_preset")


def test_train_equals_the_cli_line_for_line(tmp_path):
    steps = "train.steps=60"
    subprocess.run(
        [str(cli()), "train", "--preset", "quick", "--no-plots", "--out", str(tmp_path / "cli"),
         "--set", steps],
        check=True, capture_output=True,
    )
    run = groklab.train(preset="quick", out=tmp_path / "py", set={"train.steps": 60},
                        progress=False, plots=False)
    assert rows_without_wall(tmp_path / "cli" / "metrics.jsonl") == rows_without_wall(
        run.path / "metrics.jsonl"
    )
    cli_run = groklab.Run(tmp_path / "cli")
    assert cli_run.steps == run.steps
    for step in run.steps:
        a, b = cli_run.checkpoint(step), run.checkpoint(step)
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])


def test_checkpoint_arrays_equal_the_safetensors_tensors(tmp_path):
    run = groklab.train(preset="quick", out=tmp_path / "r", set={"train.steps": 20},
                        progress=False, plots=False)
    step = run.steps[-1]
    ours = run.checkpoint(step)
    theirs = read_safetensors(run.path / "checkpoints" / f"step_{step:06}.safetensors")
    assert ours.keys() == theirs.keys()
    for name, arr in theirs.items():
        assert ours[name].shape == arr.shape and ours[name].dtype == arr.dtype
        np.testing.assert_array_equal(ours[name], arr)
    cfg = run.config["model"]
    assert ours["blocks.0.attn.W_Q"].shape == (cfg["n_heads"], cfg["d_model"], cfg["d_head"])
    with pytest.raises(ValueError, match="checkpoint step"):
        run.checkpoint(step + 1)


def test_metrics_analyze_and_report(tmp_path):
    rows = []
    run = groklab.train(preset="quick", out=tmp_path / "r", set={"train.steps": 40},
                        progress=False, plots=False, on_log=rows.append)
    df = run.metrics
    assert list(df["step"]) == [r["step"] for r in rows] and df.columns[0] == "step"
    assert np.allclose(df["train_loss"], [r["train_loss"] for r in rows])
    measures = run.analyze(plots=False)
    assert len(measures) == len(run.steps)
    assert "key_freqs" in run.analysis
    assert run.report().exists()
    sal = run.saliency(every=10)
    assert set(run.steps[::10]) <= set(sal["step"]) and sal["step"].iloc[-1] == run.steps[-1]
    assert ((sal["key_share"] >= 0) & (sal["key_share"] <= 1)).all()
    with pytest.raises(ValueError, match="zero|mean"):
        run.saliency(baseline="median")


SIGINT_SCRIPT = """
import sys, groklab
try:
    groklab.train(preset="quick", out=sys.argv[1], set={"train.steps": 1000}, progress=False,
                  plots=False)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    raise
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT")
def test_sigint_checkpoints_and_resume_is_exact(tmp_path):
    out = tmp_path / "interrupted"
    proc = subprocess.Popen([sys.executable, "-c", SIGINT_SCRIPT, str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "interrupted" in stdout, stderr
    assert "KeyboardInterrupt" in stderr
    run = groklab.Run(out)
    stopped = run.steps[-1]
    assert 0 < stopped < 1000  # the checkpoint written on the way out
    run.checkpoint(stopped)  # valid: it loads
    run.resume(progress=False, plots=False)
    whole = groklab.train(preset="quick", out=tmp_path / "whole", set={"train.steps": 1000},
                          progress=False, plots=False)
    assert rows_without_wall(out / "metrics.jsonl") == rows_without_wall(
        whole.path / "metrics.jsonl"
    )


def test_a_second_thread_runs_while_training(tmp_path):
    ticks = []
    done = threading.Event()

    def tick():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=tick)
    t.start()
    start = time.perf_counter()
    groklab.train(preset="quick", out=tmp_path / "r", set={"train.steps": 300}, progress=False,
                  plots=False)
    elapsed = time.perf_counter() - start
    done.set()
    t.join()
    during = [x for x in ticks if start <= x <= start + elapsed]
    # with the GIL held for the whole run the thread would tick only between steps' callbacks
    gaps = np.diff(during)
    assert len(during) > 0.2 * elapsed / 0.001, (len(during), elapsed)
    assert gaps.max() < 0.5, gaps.max()


SWEEP = """
preset = "quick"

[set]
"train.steps" = 30
"train.log_every" = 10
"train.checkpoint_every" = 10
"train.threads" = 1

[grid]
"train.weight_decay" = [0.0, 1.0]
"""


def test_sweep_expand_run_collect_equals_the_cli(tmp_path):
    lines = groklab.sweep.expand(spec=SWEEP)
    assert len(lines) == 2 and {l["swept"]["train.weight_decay"] for l in lines} == {0.0, 1.0}
    (tmp_path / "sweep.toml").write_text(SWEEP)
    cli_lines = subprocess.run(
        [str(cli()), "sweep", "expand", str(tmp_path / "sweep.toml")],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()
    assert [json.loads(l) for l in cli_lines] == lines
    assert groklab.sweep.run(lines, tmp_path / "out") == (2, 0)
    assert groklab.sweep.run(tmp_path / "out" / "manifest.jsonl", tmp_path / "out") == (0, 2)
    df = groklab.sweep.collect(tmp_path / "out")
    assert len(df) == 2 and set(df["id"]) == {l["id"] for l in lines}
    assert (df["steps"] == 30).all()
    with pytest.raises(ValueError):
        groklab.sweep.expand(spec='preset = "quick"\n[grid]\n"train.lrr" = [1, 2]\n')


def test_llc_equals_the_cli_and_rejects_unknown_options(tmp_path):
    run = groklab.train(preset="quick", out=tmp_path / "q", set={"train.steps": 100},
                        progress=False, plots=False)
    opts = {"num_chains": 2, "num_draws": 20, "num_burnin_steps": 10, "batch_size": 128}
    df = run.llc(steps=[50, 100], **opts)
    assert list(df["step"]) == [50, 100]
    assert {"llc_mean", "llc_se", "init_loss", "loss_trace"} <= set(df.columns)
    assert np.array(df["loss_trace"][0]).shape == (2, 20)
    ours = (tmp_path / "q" / "llc.jsonl").read_text()
    subprocess.run(
        [str(cli()), "llc", str(tmp_path / "q"), "--steps", "50,100", "--num-chains", "2",
         "--num-draws", "20", "--num-burnin-steps", "10", "--batch-size", "128"],
        check=True, capture_output=True)
    assert (tmp_path / "q" / "llc.jsonl").read_text() == ours  # seeded: the same numbers
    with pytest.raises(ValueError, match="num_draws"):
        run.llc(steps=[100], num_drawz=5)
