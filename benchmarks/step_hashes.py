"""Bitwise regression of the training step: what each preset's weights and optimizer hold after a
short fixed-seed run on one thread, as SHA-256 digests.

    python benchmarks/step_hashes.py           # records step_hashes.json and step_hashes.md
    python benchmarks/step_hashes.py --check   # trains again and compares with the record

Recorded before the trainer's step became a plan (issue "The training step as a plan"), so that the
redesign can show it trains every preset to the same bits. Each preset trains `STEPS` iterations
(and at most `STEPS` sampler-pretraining steps where it has them) with seed 0, one torch thread,
no evaluation. Four digests per preset, each over named tensors (ebmkit.digest.tensors_sha256),
so that they do not depend on how the trainer groups or orders what it holds:

- ``parameters``: the raw (non-EMA) model's parameters;
- ``buffers``: its float and integer buffers (running statistics) and the sampler's declared state
  (DxMI's velocity variance, a buffer until it became state), under the buffer's name;
- ``optimizer``: every optimizer's per-parameter state (Adam's step, moments), keyed by the name
  of the parameter it belongs to, not by optimizer or index;
- ``ema``: the averaged model's state dict. DxMI's was re-recorded when its velocity variance
  became declared state, which the EMA model no longer averages (the previous digest is kept in
  step_hashes.json under ``replaced``).

Float results depend on the kernels torch picks for the CPU, so a record holds for the torch
version, CPU capability (torch.backends.cpu.get_cpu_capability) and CPU model it names; `--check`
and the test say so and compare nothing elsewhere.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).parent
RECORD = HERE / "step_hashes.json"
PRESETS_2D = ["drl", "cdrl", "ddaebm", "dxmi", "drl_vp", "cdrl_vp"]
IMAGE_PRESET = "cdrl_fmnist"  # pretraining, the cooperative initializer and a U-Net energy, on real images
STEPS = 50


def platform_key() -> dict:
    """What the bits depend on beyond the code: torch, the vector ISA its kernels use, and the
    CPU's model (two sessions' machines have trained DRL to different floats from the same seeds)."""
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu": cpu_model()}


def cpu_model() -> str:
    """'NAME, family F model M' from /proc/cpuinfo, else what the platform module says."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines()
                      if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        return f"{fields['model name']}, family {fields['cpu family']} model {fields['model']}"
    except (OSError, KeyError):
        return platform.processor() or platform.machine()


def short_recipe(name: str):
    from ebmkit import Recipe

    recipe = Recipe.from_name(name)
    changes = {"train.seed": 0, "train.steps": STEPS, "train.threads": 1, "train.eval_every": 0}
    if recipe.train.pretrain_steps:
        changes["train.pretrain_steps"] = min(recipe.train.pretrain_steps, STEPS)
    return recipe.override(changes)


RECORDED_NAMES = {"sampler.G.": "sampler.generator."}
"""Tensors renamed since the record, under the names they were recorded with: the adversarial
sampler's G_ψ was `generator` (December 2026), which is also the name of every random stream."""


def recorded_name(name: str) -> str:
    for new, old in RECORDED_NAMES.items():
        if new in name:
            return name.replace(new, old, 1)
    return name


def named(tensors) -> dict:
    return {recorded_name(k): v for k, v in dict(tensors).items()}


def digests(trainer) -> dict[str, str]:
    """The four digests of a trained Trainer's state (see the module docstring)."""
    from ebmkit.digest import tensors_sha256

    model = trainer.model
    names = {id(p): recorded_name(n) for n, p in model.named_parameters()}
    moments = {}
    for optimizer in trainer.optimizers.values():
        for p, slot in optimizer.state.items():
            for key, value in slot.items():
                if torch.is_tensor(value):
                    moments[f"{names[id(p)]}.{key}"] = value
    return {
        "parameters": tensors_sha256(named(model.named_parameters())),
        # declared sampler state under the name it had as a buffer (DxMI's velocity variance, before
        # December 2026): the values it holds are compared, wherever they are kept
        "buffers": tensors_sha256({**named(model.named_buffers()),
                                   **{f"sampler.{k}": v for k, v in model.sampler.declared_state.items()}}),
        "optimizer": tensors_sha256(moments),
        "ema": tensors_sha256(named(trainer.ema.module.state_dict())),
    }


def measure(name: str) -> dict:
    """Train ``name`` for STEPS iterations in a scratch directory; its digests and the seconds taken."""
    from ebmkit.training import Trainer

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        trainer = Trainer(short_recipe(name), Path(tmp) / name, progress=False)
        trainer.fit()
        return {"digests": digests(trainer), "seconds": time.perf_counter() - start}


def compare(record: dict, name: str, measured: dict) -> list[str]:
    """One line per digest that differs from the record."""
    return [f"{name}: {key} {measured[key][:12]} ≠ recorded {value[:12]}"
            for key, value in record["presets"][name].items() if measured[key] != value]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with step_hashes.json instead of recording")
    parser.add_argument("--presets", default=",".join([*PRESETS_2D, IMAGE_PRESET]))
    args = parser.parse_args(argv)
    names = [n for n in args.presets.split(",") if n]
    if args.check:
        record = json.loads(RECORD.read_text())
        if record["platform"] != platform_key():
            sys.exit(f"step_hashes.json was recorded with {record['platform']}; this is {platform_key()}: "
                     "nothing to compare")
        failures = []
        for name in names:
            result = measure(name)
            failures += compare(record, name, result["digests"])
            print(f"{name}: {'differs' if failures and failures[-1].startswith(name) else 'same bits'} "
                  f"({result['seconds']:.0f} s)", file=sys.stderr)
        if failures:
            sys.exit("\n".join(failures))
        return
    # a record for this platform is extended, so that presets can be recorded over several calls
    old = json.loads(RECORD.read_text()) if RECORD.is_file() else {}
    record = old if old.get("platform") == platform_key() and old.get("steps") == STEPS else \
        {"platform": platform_key(), "steps": STEPS, "presets": {}, "seconds": {}}
    for name in names:
        result = measure(name)
        record["presets"][name], record["seconds"][name] = result["digests"], round(result["seconds"], 1)
        print(f"{name}: {result['digests']['parameters'][:12]} ({result['seconds']:.0f} s)", file=sys.stderr)
    record["date"] = time.strftime("%Y-%m-%d")
    RECORD.write_text(json.dumps(record, indent=1) + "\n")
    lines = ["# The training step, bitwise", "", "`python benchmarks/step_hashes.py`", "",
             f"{record['date']} · torch {torch.__version__} · {platform_key()['cpu']}, CPU capability "
             f"{platform_key()['cpu_capability']} · {STEPS} iterations, seed 0, one thread", "",
             "The first 12 hex digits of each SHA-256 (the full digests are in step_hashes.json).", "",
             "| preset | parameters | buffers | optimizer | EMA | seconds |", "| --- | --- | --- | --- | --- | --- |"]
    for name, d in record["presets"].items():
        lines.append(f"| {name} | {d['parameters'][:12]} | {d['buffers'][:12]} | {d['optimizer'][:12]} | "
                     f"{d['ema'][:12]} | {record['seconds'][name]:.0f} |")
    for name, old in record.get("replaced", {}).items():  # digests re-recorded after a deliberate change
        lines += ["", f"{name}: re-recorded {', '.join(k for k in old if k != 'why')} (was "
                      f"{', '.join(v[:12] for k, v in old.items() if k != 'why')}): {old['why']}."]
    (HERE / "step_hashes.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RECORD}", file=sys.stderr)


if __name__ == "__main__":
    main()
