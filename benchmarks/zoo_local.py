"""Publish the model zoo to a Hub on 127.0.0.1 and pull every model back: `ebmkit hub publish-zoo`
end to end, offline, on a real benchmark's runs.

    python benchmarks/zoo_local.py --from BENCH_DIR [--recipes drl,cdrl,...]

The Hub is the tests' (tests/hub_upload_server.py: olah 0.5.4 serving downloads, the upload
server taking huggingface_hub's commits). The command publishes, then publishes again (which must
push nothing), then every model is pulled by id and must generate, for the same seed, exactly what
its run generates. Writes benchmarks/zoo.md: the zoo's table (BENCH_DIR/zoo.md) and what was checked.
A maintainer publishes for real with ``HF_TOKEN=… ebmkit hub publish-zoo ORG --from BENCH_DIR``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))

from hub_upload_server import local_hub  # noqa: E402

TOKEN = "hf_ebmkit_local_token"
ORG = "ebmkit-zoo"
SEED, N = 7, 512


def ebmkit(hub: dict, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update({"HF_HOME": str(hub["hf_home"]), "HF_ENDPOINT": hub["upload"].url, "HF_TOKEN": TOKEN,
                "HF_HUB_DISABLE_PROGRESS_BARS": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "200"})
    result = subprocess.run([sys.executable, "-m", "ebmkit", *args], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"ebmkit {' '.join(args)} failed: {result.stderr}")
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="bench", type=Path, required=True, help="an `ebmkit bench toy` output")
    parser.add_argument("--recipes", default="", help="2D presets (default: every registered one)")
    args = parser.parse_args(argv)
    publish = ["hub", "publish-zoo", ORG, "--from", str(args.bench), "--yes"] + \
        (["--recipes", args.recipes] if args.recipes else [])
    from ebmkit.model import EnergyModel

    with tempfile.TemporaryDirectory() as tmp, local_hub(Path(tmp), TOKEN) as hub:
        first = ebmkit(hub, *publish)
        print(first.stderr.strip().splitlines()[-1], file=sys.stderr)
        second = ebmkit(hub, *publish)
        print(second.stderr.strip().splitlines()[-1], file=sys.stderr)
        repos = sorted(p.parent.name + "/" + p.name for p in (hub["mirrors"] / "models" / ORG).iterdir())
        same = 0
        for repo in repos:
            pulled = Path(ebmkit(hub, "hub", "pull", repo).stdout.strip())
            run = args.bench / "runs" / f"{repo.split('/')[1]}-s0"
            g = lambda: torch.Generator().manual_seed(SEED)  # noqa: E731
            a = EnergyModel.from_run(pulled).generate(N, generator=g())
            b = EnergyModel.from_run(run).generate(N, generator=g())
            same += bool(torch.equal(a, b))
    table = (args.bench / "zoo.md").read_text()
    lines = ["# The model zoo, published to a local Hub", "",
             f"`python benchmarks/zoo_local.py --from {args.bench}" + (f" --recipes {args.recipes}`" if args.recipes else "`"),
             "", f"- first publish: {first.stderr.strip().splitlines()[-1].split(';')[0]}",
             f"- second publish: {second.stderr.strip().splitlines()[-1].split(';')[0]}",
             f"- pulled back by id: {same} of {len(repos)} generate the run's samples exactly ({N} samples, seed {SEED})",
             "", table]
    (HERE / "zoo.md").write_text("\n".join(lines))
    print(f"wrote {HERE / 'zoo.md'}", file=sys.stderr)
    if same != len(repos):
        sys.exit(f"{len(repos) - same} pulled models differ from their runs")


if __name__ == "__main__":
    main()
