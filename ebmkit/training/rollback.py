"""What a divergence does to a run (``train.on_divergence``).

With ``stop`` (or no rollbacks left) the run stops with one line naming the component, the step
and the quantity; the checkpoint on disk predates the problem, since every save is preceded by
the watch's check. With ``rollback`` the run goes back to that checkpoint and draws from a new
seed, recorded in rollbacks.jsonl, so that a resumed run repeats it.
"""

from __future__ import annotations

import json

import torch

from ebmkit.training.errors import DivergenceError


def seed_after(seed: int, rollbacks: int) -> int:
    """The training stream's seed after ``rollbacks`` rollbacks: a new stream, reproducible from the record."""
    return seed + 1 + 1_000_003 * rollbacks


def handle(trainer, problem) -> None:
    """Stop (raise `DivergenceError`) or roll ``trainer`` back to its last checkpoint."""
    tc = trainer.recipe.train
    if tc.on_divergence == "stop" or trainer.rollbacks >= tc.max_rollbacks:
        tried = f" (after {trainer.rollbacks} rollbacks)" if tc.on_divergence == "rollback" else ""
        raise DivergenceError(f"{problem.message}{tried}; the last good checkpoint (step {trainer.saved_step}) is "
                              f"kept in {trainer.run_dir / 'checkpoint'}", step=problem.step)
    rollbacks = trainer.rollbacks + 1
    trainer._load()
    trainer.watch.forget()
    trainer.rollbacks = rollbacks
    seed = seed_after(tc.seed, rollbacks)
    trainer.generator.manual_seed(seed)
    torch.manual_seed(seed)  # and new dropout masks
    record = {"diverged_at": problem.step, "problem": problem.message, "restarted_from": trainer.step, "seed": seed}
    if trainer.dist.is_main:
        with open(trainer.run_dir / "rollbacks.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
    trainer.reports.rollback({**record, "rollback": rollbacks})  # the loggers drop the abandoned steps
    trainer.console.print(f"[yellow]rollback {rollbacks}/{tc.max_rollbacks}:[/] {problem.message}; back to step "
                          f"{trainer.step} with seed {seed}", soft_wrap=True, highlight=False)
    trainer._save()  # the new seed and the count, so that a resume repeats this run
