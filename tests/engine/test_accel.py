"""The GPU path's policy (engine/train/accel.py): decided from the device's capabilities and the flags.

The CUDA branches are checked as decisions (``decide_policy`` is a pure function of a
``Capabilities`` record); what runs on this CPU-only machine is run for real: the CPU policy,
the refusals, bf16 and --compile on a tiny config, the device-resident batcher against batch_at,
the benchmark's skip path. The last test runs only where CUDA exists."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.config import ConfigError, ModelConfig, TrainConfig, preset
from engine.events import Message
from engine.jobs import collect
from engine.train.accel import (Capabilities, HostToDevice, TokenBatcher, accel_policy, decide_policy,
                                resident_tokens_fit)
from engine.train.model_job import batch_at, train_model

CPU = Capabilities("cpu")
H200 = Capabilities("cuda:0", bf16=True, total_memory=141 * 2**30, triton=True, name="NVIDIA H200")
V100 = Capabilities("cuda:0", bf16=False, total_memory=32 * 2**30, triton=False, name="Tesla V100")
MODEL = ModelConfig(vocab_size=64, n_ctx=16, d_model=16, n_heads=2, d_mlp=32)
TRAIN = TrainConfig(tokens=12 * 8 * 16, batch_size=8, lr=1e-2, warmup_steps=2, eval_every=6, eval_batches=2, seed=3)
REPO = Path(__file__).resolve().parents[2]


def _tokens(n=6000):
    return (np.cumsum(np.random.default_rng(0).integers(1, 3, n)) % MODEL.vocab_size).astype(np.uint16)


def test_cpu_policy_is_plain_fp32():
    policy = decide_policy(CPU)
    assert (policy.precision, policy.tf32, policy.fused_adamw, policy.pin_memory, policy.compile) == \
        ("fp32", False, False, False, False)
    assert policy.autocast_dtype is None and policy.notes == ()
    assert policy.adamw_kwargs() == {"foreach": True}
    here = accel_policy("cpu")                                  # what the jobs get here
    assert (here.precision, here.fused_adamw, here.pin_memory, here.notes) == ("fp32", False, False, ())


def test_cuda_policy_turns_everything_on_where_it_pays():
    policy = decide_policy(H200)
    assert (policy.precision, policy.tf32, policy.fused_adamw, policy.pin_memory) == ("bf16", True, True, True)
    assert policy.autocast_dtype is torch.bfloat16 and policy.adamw_kwargs() == {"fused": True}
    exact = decide_policy(H200, "fp32")                      # --precision fp32: exact fp32, TF32 off too
    assert (exact.precision, exact.tf32, exact.fused_adamw) == ("fp32", False, True)
    old = decide_policy(V100)                                # no bf16 units: auto falls back to fp32
    assert (old.precision, old.tf32) == ("fp32", True)
    with pytest.raises(ConfigError, match="Tesla V100 has no native bf16"):
        decide_policy(V100, "bf16")


def test_bf16_on_the_cpu_is_allowed_with_a_warning():
    policy = decide_policy(CPU, "bf16")                     # no bf16 units: warned it will be slow
    assert policy.precision == "bf16" and len(policy.notes) == 1 and "many times slower" in policy.notes[0]
    units = decide_policy(Capabilities("cpu", bf16=True), "bf16")
    assert units.precision == "bf16" and "slower" not in units.notes[0] and "bf16 rounding" in units.notes[0]
    assert decide_policy(Capabilities("cpu", bf16=True)).precision == "fp32"      # auto stays fp32 on CPUs
    with pytest.raises(ConfigError, match="precision must be one of auto, fp32, bf16"):
        decide_policy(CPU, "fp16")


def test_compile_is_ignored_on_the_cpu_and_needs_triton_on_cuda():
    cpu = decide_policy(CPU, compile=True)
    assert not cpu.compile and "--compile is ignored on CPU" in cpu.notes[0]
    assert decide_policy(H200, compile=True).compile
    with pytest.raises(ConfigError, match="--compile needs triton"):
        decide_policy(V100, compile=True)


def test_token_array_kept_on_the_gpu_only_when_it_fits():
    assert not resident_tokens_fit(1000, decide_policy(CPU))
    assert resident_tokens_fit(4 * 10**9, decide_policy(H200))          # 4 GB of a 141 GiB GPU
    assert not resident_tokens_fit(20 * 2**30, decide_policy(H200))     # more than an eighth


def test_resident_batcher_gives_batch_at_windows_bit_for_bit():
    tokens = _tokens()
    policy = decide_policy(CPU)
    resident = TokenBatcher(tokens, 8, 16, 3, policy, batch_at, resident=True)   # the CUDA path's gather
    host = TokenBatcher(tokens, 8, 16, 3, policy, batch_at)
    assert resident.resident and not host.resident
    for step in (0, 1, 17, 400):
        want = batch_at(tokens, step, 8, 16, 3)
        for got in (resident(step), host(step)):
            assert all(g.dtype == torch.int64 and torch.equal(g, w) for g, w in zip(got, want))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_one_clear_user_error(tmp_path, capsys):
    for name in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError, match=f"device '{name}' was requested but no CUDA GPU is available"):
            accel_policy(name)
    from engine.cli.main import main
    assert main(["run", "--preset", "tiny", "--device", "cuda", "--out", str(tmp_path / "x.h5")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no CUDA GPU is available" in err[0] and not list(tmp_path.iterdir())


def test_device_flag_refuses_nonsense_and_config_refuses_bad_precision():
    with pytest.raises(ConfigError, match="unknown device 'cuda:x'"):
        accel_policy("cuda:x")
    with pytest.raises(ConfigError, match="precision must be one of"):
        preset("tiny").with_overrides(precision="fp8").validate()
    with pytest.raises(ConfigError, match="compile must be true or false"):
        preset("tiny").with_overrides(compile="yes").validate()
    from engine.cli.main import build_parser
    args = build_parser().parse_args(["run", "--device", "cuda:1", "--precision", "bf16", "--compile", "--out", "x"])
    assert (args.device, args.precision, args.compile) == ("cuda:1", "bf16", True)


def test_bf16_and_compile_train_a_tiny_model_on_the_cpu_and_weights_stay_fp32():
    tokens = _tokens()
    plain, _ = collect(train_model(MODEL, TRAIN, tokens[:5000], tokens[5000:], device="cpu"))
    ignored, events = collect(train_model(MODEL, TRAIN, tokens[:5000], tokens[5000:], device="cpu", compile=True))
    assert any(isinstance(e, Message) and "--compile is ignored" in e.text for e in events)
    for name, tensor in plain.model.state_dict().items():       # ignored means: the same run, bit for bit
        assert torch.equal(ignored.model.state_dict()[name], tensor)
    bf16, events = collect(train_model(MODEL, TRAIN, tokens[:5000], tokens[5000:], device="cpu", precision="bf16"))
    assert any(isinstance(e, Message) and e.level == "warning" and "bf16" in e.text for e in events)
    assert np.isfinite(bf16.final_val_loss) and abs(bf16.final_val_loss - plain.final_val_loss) < 0.5
    assert all(t.dtype == torch.float32 for t in bf16.model.state_dict().values())
    assert not any(torch.equal(bf16.model.state_dict()[n], t) for n, t in plain.model.state_dict().items()
                   if n.endswith("weight") and t.dim() == 2)        # bf16 really ran: different rounding


def test_gpu_benchmark_skips_cleanly_without_cuda():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_gpu_demo.py")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and done.stdout.startswith("bench_gpu_demo: skipped, no CUDA device")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_cuda_pinned_transfers_and_resident_tokens_match_the_host():
    policy = accel_policy("cuda")
    send = HostToDevice(policy.device, policy.pin_memory)
    batches = [torch.randn(64, 8) for _ in range(5)]
    sent = [send(b) for b in batches]                           # two staging buffers, reused
    assert all(s.is_cuda and torch.equal(s.cpu(), b) for s, b in zip(sent, batches))
    tokens = _tokens()
    batcher = TokenBatcher(tokens, 8, 16, 3, policy, batch_at)
    assert batcher.resident
    for step in (0, 5):
        assert all(torch.equal(g.cpu(), w) for g, w in zip(batcher(step), batch_at(tokens, step, 8, 16, 3)))
    result, _ = collect(train_model(MODEL, TRAIN, tokens[:5000], tokens[5000:], device="cuda"))
    assert np.isfinite(result.final_val_loss)
    assert all(t.dtype == torch.float32 and t.device.type == "cpu" for t in result.model.state_dict().values())
