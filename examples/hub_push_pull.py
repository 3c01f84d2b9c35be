"""Share a trained model and load it back: a Hub repo, or a local folder with the same files.

A pushed model is model.safetensors + config.json (the full recipe) + a model card: loading
rebuilds every component from config.json with the installed ebmkit and its plugins, and
nothing is unpickled. The loaded model is the trained one: same weights, so the same seed
gives the same samples.

    python examples/hub_push_pull.py                          # a local folder stands in for the Hub: offline
    python examples/hub_push_pull.py --repo you/ebm-demo      # the Hub: push, then pull that commit back
    python examples/hub_push_pull.py --run runs/ddaebm-8g --repo you/ebm-demo
    python examples/hub_push_pull.py --fast                   # seconds: a smoke test

With --repo everything is huggingface_hub's: the token from HF_TOKEN or `hf auth login`, the
endpoint from HF_ENDPOINT, downloads into its cache. docs/hub.md has the details.
"""

import argparse
from pathlib import Path

import torch

from ebmkit import EnergyModel, Recipe


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", help="org/name on the Hub (default: no Hub; a local folder round trip)")
    parser.add_argument("--run", type=Path, help="a run directory of `ebmkit train` (default: train a small one here)")
    parser.add_argument("--out", type=Path, default=Path("runs/hub_push_pull"))
    parser.add_argument("--fast", action="store_true", help="a few seconds: train 20 steps")
    args = parser.parse_args()

    if args.run is not None:
        model = EnergyModel.from_run(args.run)  # the run's EMA weights, as `ebmkit hub push` sends them
    else:
        recipe = Recipe.from_name("ddaebm").override({"data": "8gaussians", "train.steps": 20 if args.fast else 500})
        model = recipe.fit(args.out / "run", progress=not args.fast, overwrite=True)

    if args.repo is None:
        # save_pretrained writes exactly the files push_to_hub uploads; from_pretrained reads a folder too
        folder = model.save_pretrained(args.out / "pushed")
        loaded = Recipe.from_pretrained(folder)
        print(f"saved to {folder}: {', '.join(sorted(p.name for p in folder.iterdir()))}")
    else:
        commit = model.push_to_hub(args.repo, commit_message="ebmkit example: hub_push_pull.py")
        loaded = Recipe.from_pretrained(args.repo, revision=commit)  # a commit id pins these exact weights
        print(f"pushed {args.repo} at commit {commit}, pulled it back")

    same = model.state_dict().keys() == loaded.state_dict().keys() and all(
        torch.equal(value, loaded.state_dict()[key]) for key, value in model.state_dict().items())
    x = model.generate(1000, generator=torch.Generator().manual_seed(0))
    y = loaded.generate(1000, generator=torch.Generator().manual_seed(0))
    print(f"recipe '{loaded.recipe.name}' on '{loaded.recipe.data['name']}', {loaded.weights_kind} weights")
    print(f"same weights: {same}; same samples from the same seed: {torch.equal(x, y)}")


if __name__ == "__main__":
    main()
