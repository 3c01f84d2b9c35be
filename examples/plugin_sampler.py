"""Add a sampler of your own: register it in ebmkit's registry, then name it in a recipe.

The new sampler is MALA (Roberts & Tweedie, 1996) on DRL's recovery likelihood: the `langevin`
sampler's step becomes a proposal that is accepted with the Metropolis-Hastings probability,
so each chain targets p(y | x_{t+1}) exactly instead of up to the step's discretisation error.
It subclasses the built-in `LangevinSampler`, so it keeps its options, step sizes, `sample`
and `generate`, and replaces only `refine`, the K steps of one level.

    python examples/plugin_sampler.py            # drl with MALA on 8gaussians: a minute or two on a CPU
    python examples/plugin_sampler.py --fast     # seconds: a smoke test, barely trained

`SAMPLERS.register` makes the name known to this Python process only: `ebmkit train`, and
loading a run trained with it in another process, do not see it. To ship a component, make it
a plugin package with an entry point: docs/plugins.md explains how, and
plugins/ebmkit-plugin-example is a complete one (a sampler, a network and a recipe) with the
contract tests of `ebmkit.testing`.
"""

import argparse
from pathlib import Path

import torch

import ebmkit.random as rnd
from ebmkit import Recipe
from ebmkit.data import DATASETS
from ebmkit.evaluation import evaluate
from ebmkit.registry import SAMPLERS
from ebmkit.samplers import LangevinSampler


@SAMPLERS.register("mala")
class MALA(LangevinSampler):
    """Recovery-likelihood Langevin with a Metropolis-Hastings accept/reject on each of the K steps."""

    # no new options: LangevinSampler.Options (n_steps, noise_scale, ...) is inherited as it is

    def refine(self, y, x_next, t, energy, noise_scale, generator=None, n_steps=None):
        if noise_scale == 0:  # no noise, no proposal density: plain gradient steps
            return super().refine(y, x_next, t, energy, noise_scale, generator, n_steps)
        n_steps = self.config.n_steps if n_steps is None else n_steps  # generation may ask for its own K
        view = (-1,) + (1,) * (y.dim() - 1)
        s2, k = self.step_sizes[t].view(view), self.tether[t].view(view)
        var = noise_scale**2 * s2  # the proposal's variance; MH corrects for any width

        def log_target(y):
            """log p(y | x_{t+1}) up to a constant, and the Langevin drift ½ s² ∇ log p: exactly
            `langevin`'s step −½ s² ∇E − k (y − x_{t+1}), as log p = −E − (k / s²) ‖y − x_{t+1}‖²."""
            with torch.enable_grad():
                y = y.detach().requires_grad_(True)
                log_p = -energy(y, t) - (k / s2 * (y - x_next) ** 2).flatten(1).sum(1)
                (grad,) = torch.autograd.grad(log_p.sum(), y)
            return log_p.detach(), 0.5 * s2 * grad

        def log_proposal(to, start, drift):  # log N(to; start + drift, var), up to a constant
            return -((to - start - drift) ** 2 / (2 * var)).flatten(1).sum(1)

        y = y.detach()
        log_p, drift = log_target(y)
        accepted = torch.zeros(len(y), device=y.device)
        for _ in range(n_steps):
            # every draw goes through ebmkit.random: exact resume and per-sample seeds depend on it
            proposal = y + drift + var.sqrt() * rnd.randn_like(y, generator)
            log_p_new, drift_new = log_target(proposal)
            log_alpha = log_p_new - log_p + log_proposal(y, proposal, drift_new) - log_proposal(proposal, y, drift)
            # accept when log U < log α, with U = Φ(Z) uniform for Z ~ N(0, 1)
            accept = torch.special.log_ndtr(rnd.randn(log_alpha.shape, generator, device=y.device)) < log_alpha
            y = torch.where(accept.view(view), proposal, y)
            log_p = torch.where(accept, log_p_new, log_p)
            drift = torch.where(accept.view(view), drift_new, drift)
            accepted += accept.float()
        self.last_acceptance = (accepted / n_steps).mean().item()  # for the printout only
        return y


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="8gaussians")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("runs/plugin_sampler"))
    parser.add_argument("--fast", action="store_true", help="a few seconds: 20 iterations with K = 2")
    args = parser.parse_args()

    print(f"registered: mala ({SAMPLERS.get('mala').summary})")
    changes = {"data": args.data, "train.steps": args.steps}
    if args.fast:
        changes.update({"train.steps": 20, "sampler.n_steps": 2})
    # MALA takes the langevin options, so changing the name alone keeps DRL's K and noise scales
    recipe = Recipe.from_name("drl").override({**changes, "sampler.name": "mala"})
    model = recipe.fit(args.out, progress=not args.fast, overwrite=True)

    x = model.generate(1000, generator=torch.Generator().manual_seed(0))
    print(f"generated {len(x)} samples; MH acceptance at the last level: {model.sampler.last_acceptance:.1%}")
    config = recipe.eval.model_copy(update={"n_samples": 1000, "grid_resolution": 64} if args.fast else {})
    metrics = evaluate(model, DATASETS.build(recipe.data), config)
    print(f"sliced Wasserstein {metrics['sw']:.3f}, energy AUC {metrics['energy_auc']:.3f} "
          f"(true density {metrics['true_energy_auc']:.3f})")


if __name__ == "__main__":
    main()
