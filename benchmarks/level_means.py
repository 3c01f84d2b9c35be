"""Where a recovery-likelihood chain loses the data's mean: the mean of x_t level by level.

Generation runs T conditional steps from x_T ~ N(0, I), each x_t = y / a_{t+1}. A bias δ in the
mean of y at one level is divided by a_{t+1} < 1 there and by every a below it, so the chain
amplifies it to δ / ᾱ_t by level 0: on CDRL's schedule 1/ᾱ_5 ≈ 3. Under the data, E[x_t] = ᾱ_t E[x_0]
at every level. This prints both, for a trained run of a `langevin` or `cooperative` sampler,
so that a drift of the samples' overall intensity can be traced to the level that starts it.

    python benchmarks/level_means.py RUN_DIR [-n 500] [--seed 0]
"""

from __future__ import annotations

import argparse

import torch

from ebmkit.data import DATASETS
from ebmkit.model import EnergyModel


def level_means(model: EnergyModel, n: int, seed: int) -> list[tuple[int, float, float]]:
    """(t, mean of generated x_t, ᾱ_t · mean of the data) for t = T−1..0, all pixels pooled."""
    chain = getattr(model.sampler, "refiner", model.sampler)
    if not hasattr(chain, "refine"):
        raise SystemExit(f"sampler '{model.recipe.sampler['name']}' has no per-level chain to trace; "
                         "this script reads langevin and cooperative")
    schedule = model.schedule
    data_mean = DATASETS.build(model.recipe.data).sample(10_000, torch.Generator().manual_seed(seed)).mean().item()
    rows, refine = [], chain.refine

    def traced(y0, x_next, t, *args, **kwargs):
        y = refine(y0, x_next, t, *args, **kwargs)
        level = int(t[0])
        x_t = y / schedule.recovery_scale[level]
        rows.append((level, x_t.mean().item(), schedule.sqrt_alphas_cumprod[level].item() * data_mean))
        return y

    chain.refine = traced  # this instance only; generation itself is unchanged
    try:
        with torch.no_grad():
            model.generate(n, generator=torch.Generator(device=model.device).manual_seed(seed))
    finally:
        del chain.refine
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("-n", type=int, default=500, help="samples to generate")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = EnergyModel.from_run(args.run_dir)
    print("| level t | mean of generated x_t | ᾱ_t · mean of data | difference |")
    print("| --- | --- | --- | --- |")
    for t, got, want in level_means(model, args.n, args.seed):
        print(f"| {t} | {got:+.3f} | {want:+.3f} | {got - want:+.3f} |")


if __name__ == "__main__":
    main()
