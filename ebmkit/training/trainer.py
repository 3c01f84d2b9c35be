"""The one training loop every recipe runs on (DESIGN.md, "Data flows one way").

    data ──divergence.training_batch (schedule)──▶ TrainingBatch ──sampler──▶ negatives
         ──divergence.energy_loss──▶ energy optimizer
         ──sampler.value_steps──▶ energy optimizer (a value sharing the energy's network; DxMI)
         ──divergence.sampler_loss──▶ sampler optimizer ──▶ EMA, logs, evaluation, checkpoint

A learnable sampler with ``pretrain_loss`` can first train alone (``train.pretrain_steps``).

Nothing here is specific to an algorithm. Randomness comes from two explicit generators (data
and training) whose states are checkpointed, so a resumed run repeats an uninterrupted one bit
for bit on the same machine; periodic evaluation uses its own seed and never touches them.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.optim.swa_utils import AveragedModel

from ebmkit.data import DATASETS
from ebmkit.metrics import sliced_wasserstein
from ebmkit.model import EnergyModel
from ebmkit.random import ShardedGenerator
from ebmkit.training.plots import density_figure, save_image_grid
from ebmkit.training.checkpoint import (
    CheckpointError,
    find_checkpoint,
    load_checkpoint,
    load_tensors,
    optimizer_from_flat,
    optimizer_to_flat,
    save_checkpoint,
    save_tensors,
    write_json,
)
from ebmkit.training.distributed import Distributed, global_batch_problem


PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
NEVER = 2**62  # "no non-finite loss yet" in `Trainer._watch`

# In-training validation draws: disjoint from `ebmkit eval`'s seeds (seed … seed + 4).
VALIDATION_SEED_OFFSET = 1000

class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss, an unusable run directory)."""


def resolve_device(name: str) -> torch.device:
    """``train.device`` (its spelling already checked by TrainConfig) on this machine."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"train.device is '{name}' but no CUDA device is available; use 'cpu' or 'auto'")
    if name == "mps" and not torch.backends.mps.is_available():
        raise TrainingError("train.device is 'mps' but no Apple-silicon GPU is available; use 'cpu' or 'auto'")
    return torch.device(name)


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Linear warm-up, then constant or cosine decay to 0 at the last step."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return 1.0


def ema_multi_avg_fn(decay: float, warmup: bool):
    """EMA update for AveragedModel. With warm-up the decay is min(decay, (1+n)/(10+n)) after n
    updates (TF's ExponentialMovingAverage with num_updates), so short runs are not dominated
    by the initial weights. AveragedModel passes one device/dtype group per call."""

    @torch.no_grad()
    def update(ema_params, params, num_averaged):
        n = int(num_averaged)
        if not ema_params[0].is_floating_point():  # counters among the buffers: copied, not averaged
            torch._foreach_copy_(ema_params, params)
            return
        d = min(decay, (1 + n) / (10 + n)) if warmup else decay
        torch._foreach_lerp_(ema_params, params, 1 - d)

    return update


@contextmanager
def frozen(module: torch.nn.Module):
    """Parameters of ``module`` get no gradient inside the block (gradients still reach inputs)."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p in params:
            p.requires_grad_(True)


def default_run_dir(recipe, root: Path = Path("runs")) -> Path:
    data = recipe.data["name"] if recipe.data["name"] != "file" else Path(recipe.data["path"]).stem
    existing = [int(m.group(1)) for p in root.glob("*") if (m := re.match(r"(\d+)-", p.name))]
    return root / f"{max(existing, default=-1) + 1:03d}-{recipe.name}-{data}"


class Trainer:
    """Trains ``recipe`` into ``run_dir``. Under torchrun it is one data-parallel rank: rank 0
    alone writes files and logs, every rank steps the same replica on its share of the batch."""

    def __init__(self, recipe, run_dir=None, *, resume: bool = False, overwrite: bool = False,
                 progress: bool = True, console: Console | None = None):
        self.dist = Distributed.from_env(recipe.train.device)
        self.console = console or Console(stderr=True, quiet=not self.dist.is_main)
        self.progress_enabled = progress and self.dist.is_main
        if resume:
            if run_dir is None:
                raise TrainingError("resume needs a run directory")
            self.run_dir = Path(run_dir)
            if find_checkpoint(self.run_dir / "checkpoint") is None:
                raise TrainingError(f"cannot resume '{self.run_dir}': no checkpoint found in it")
        else:
            if self.dist.is_main:
                run_dir = Path(run_dir) if run_dir is not None else default_run_dir(recipe)
                if run_dir.exists() and any(run_dir.iterdir()) and not overwrite:
                    raise TrainingError(
                        f"run directory '{run_dir}' already exists; pass --resume to continue it "
                        "or --overwrite to start it again"
                    )
            self.run_dir = Path(self.dist.broadcast_object(str(run_dir)))  # rank 0 numbers a default one
        self.recipe = recipe
        self.resume = resume
        self.overwrite = overwrite

    def _clear_previous_run(self):
        """--overwrite: remove what an earlier run wrote, only once the new one has been built."""
        for stale in ("checkpoint", "checkpoint.old", "checkpoint.tmp", "samples"):
            shutil.rmtree(self.run_dir / stale, ignore_errors=True)
        for stale in ("stats.jsonl", "best.safetensors", "model.safetensors", "density.png", "samples.png", "eval.json"):
            (self.run_dir / stale).unlink(missing_ok=True)

    # -- setup --------------------------------------------------------------------------
    def _setup(self):
        r, tc = self.recipe, self.recipe.train
        if tc.threads:
            torch.set_num_threads(tc.threads)
        self.device = resolve_device(tc.device)
        if self.dist.enabled:
            if problem := global_batch_problem(tc.batch_size, self.dist.world_size):
                raise TrainingError(problem)
            if self.device.type == "cuda":
                self.device = torch.device("cuda", self.dist.local_rank)
                torch.cuda.set_device(self.device)
        self.dataset = DATASETS.build(r.data)
        torch.manual_seed(tc.seed)  # network initialisation
        self.model = EnergyModel(r, self.dataset.shape).to(self.device)
        if tc.pretrain_steps and not (self.model.sampler.learnable and hasattr(self.model.sampler, "pretrain_loss")):
            raise TrainingError(f"train.pretrain_steps is {tc.pretrain_steps} but sampler '{r.sampler['name']}' "
                                "has no pretraining objective; set it to 0")
        # buffers too: spectral norm keeps its power-iteration vectors in buffers
        self.ema = AveragedModel(self.model, multi_avg_fn=ema_multi_avg_fn(tc.ema_decay, tc.ema_warmup), use_buffers=True)
        if tc.compile:
            self._compile()
        # one optimizer per parameter group; a learnable sampler gets its own (CDRL: AdamW)
        self.optimizers = {
            "energy": self._adam(torch.optim.Adam, self.model.energy.parameters(), lr=tc.lr,
                                 weight_decay=tc.weight_decay)
        }
        if self.model.sampler.learnable:  # groups may carry an "lr_scale" (DxMI's log σ: its own lr)
            self.optimizers["sampler"] = self._adam(
                torch.optim.AdamW, self.model.sampler.optimizer_groups(), lr=tc.sampler_lr or tc.lr,
                weight_decay=tc.sampler_weight_decay,
            )
        self.data_generator = torch.Generator().manual_seed(tc.seed)
        self.generator = torch.Generator(self.device).manual_seed(tc.seed + 1)
        # what components draw from: under data parallelism, this rank's rows of the global draw
        self.draw = ShardedGenerator(self.generator, self.dist.rank, self.dist.world_size) if self.dist.enabled \
            else self.generator
        self.step = 0
        self.best = {tc.eval_metric: None, "step": None}
        self.fd_fmnist = None  # the FD-FMNIST scorer, loaded at the first evaluation that needs it
        if tc.eval_metric == "fd_fmnist":
            from ebmkit.metrics.fmnist import SHAPE

            if self.dataset.shape != SHAPE:  # fail before training, not at the first evaluation
                raise TrainingError(f"train.eval_metric 'fd_fmnist' scores 28×28 grey images; this data has points "
                                    f"of shape {self.dataset.shape}: use 'sw'")
        self.history: list[dict] = []
        self.rollbacks = 0
        self._first_nonfinite: dict[str, torch.Tensor] = {}
        # fp16 needs loss scaling (bf16 has fp32's exponent range): one scaler per optimizer
        self.scalers = {name: torch.amp.GradScaler(self.device.type) for name in self.optimizers} \
            if tc.precision == "fp16" else {}

    def _compile(self):
        """``train.compile``: the networks being trained (`EnergyModel.trained_networks`), compiled in place
        (nn.Module.compile keeps state-dict names, so checkpoints are the same files)."""
        r = self.recipe
        if self.model.divergence.differentiates_twice:
            raise TrainingError(f"train.compile: divergence '{r.divergence['name']}' backpropagates through a gradient "
                                "of the energy (a gradient penalty), which compiled networks do not support; set "
                                "train.compile=false or turn the penalty off")
        for module in self.model.trained_networks().values():
            module.compile()

    def _lr(self, step: int, group: str = "energy") -> float:
        tc = self.recipe.train
        base = tc.lr if group == "energy" else (tc.sampler_lr or tc.lr)
        return base * lr_factor(step, tc.warmup, tc.steps, tc.lr_schedule)

    def autocast(self):
        """``train.precision``'s autocast, around forward passes only (backward follows their dtypes)."""
        precision = self.recipe.train.precision
        return torch.autocast(self.device.type, dtype=PRECISIONS[precision], enabled=precision != "fp32")

    def _update(self, group: str, loss: torch.Tensor, parameters, what: str) -> torch.Tensor | None:
        """One optimizer step of a parameter group; returns the pre-clip gradient norm. ``what``
        names the loss if it is not finite."""
        opt, tc = self.optimizers[group], self.recipe.train
        self._watch(what, loss)
        for g in opt.param_groups:
            g["lr"] = self._lr(self.step, group) * g.get("lr_scale", 1.0)
        opt.zero_grad(set_to_none=True)
        scaler = self.scalers.get(group)
        if scaler is None:
            loss.backward()
        else:  # fp16: scale the loss so small gradients survive, unscale before clipping
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
        self.dist.all_reduce_gradients(parameters)
        clip = tc.grad_clip if group == "energy" or tc.sampler_grad_clip is None else tc.sampler_grad_clip
        norm = torch.nn.utils.clip_grad_norm_(parameters, clip) if clip is not None else None
        if scaler is None:
            opt.step()
        else:  # skips the step on inf/NaN gradients and lowers the scale; updated after every step, as
            scaler.step(opt)  # the energy's optimizer may step several times per iteration (DxMI)
            scaler.update()
        return norm

    def _watch(self, what: str, loss: torch.Tensor) -> None:
        """Remember, on the device and without a sync, the first step at which loss ``what`` was
        not finite; `_nonfinite` reads it at log and checkpoint steps."""
        first = self._first_nonfinite.get(what, torch.full((), NEVER, device=loss.device))
        bad = ~torch.isfinite(loss.detach().float())
        self._first_nonfinite[what] = torch.where(bad & (first == NEVER), self.step + 1, first)

    def _nonfinite(self) -> tuple[int, str] | None:
        """(step, loss) of the earliest non-finite loss since the last check, over all ranks."""
        if not self._first_nonfinite:
            return None
        names = sorted(self._first_nonfinite)
        first = self.dist.minimum(torch.stack([self._first_nonfinite[k] for k in names]))
        self._first_nonfinite.clear()
        step = int(first.min())
        return None if step == NEVER else (step, names[int(first.argmin())])

    # -- checkpoints --------------------------------------------------------------------
    def _save(self):
        if not self.dist.is_main:
            return
        files = {"model": self.model.state_dict(), "ema": self.ema.state_dict(), "optimizer": {}}
        opt_meta = {}
        for name, opt in self.optimizers.items():
            tensors, meta = optimizer_to_flat(name, opt)
            files["optimizer"].update(tensors)
            opt_meta[name] = meta
        files["optimizer"]["rng.data"] = self.data_generator.get_state()
        files["optimizer"]["rng.train"] = self.generator.get_state().cpu()
        state = {
            "step": self.step,
            "optimizers": opt_meta,
            "scalers": {name: scaler.state_dict() for name, scaler in self.scalers.items()},
            "rollbacks": self.rollbacks,
            "best": self.best,
            "recipe": self.recipe.model_dump(mode="json"),
        }
        save_checkpoint(self.run_dir / "checkpoint", files, state)

    def _load(self):
        files, state = load_checkpoint(self.run_dir / "checkpoint")
        try:
            self.model.load_state_dict(files["model"], strict=True)
            self.ema.load_state_dict(files["ema"], strict=True)
            for name, opt in self.optimizers.items():
                optimizer_from_flat(name, opt, files["optimizer"], state["optimizers"][name])
            self.data_generator.set_state(files["optimizer"]["rng.data"])
            self.generator.set_state(files["optimizer"]["rng.train"].to(self.generator.device))
        except (KeyError, RuntimeError) as exc:
            raise CheckpointError(f"checkpoint in '{self.run_dir}' does not match its recipe: {exc}") from None
        for name, scaler in self.scalers.items():
            if name in state.get("scalers", {}):
                scaler.load_state_dict(state["scalers"][name])
        self.step = state["step"]
        self.best = state["best"]
        self.rollbacks = state.get("rollbacks", 0)
        stats = self.run_dir / "stats.jsonl"
        if stats.is_file() and self.dist.is_main:  # drop log lines written after the checkpoint we resume from
            lines = [json.loads(line) for line in stats.read_text().splitlines() if line.strip()]
            self.history = [h for h in lines if h["step"] <= self.step]
            stats.write_text("".join(json.dumps(h) + "\n" for h in self.history))

    def _write_config(self):
        if self.dist.is_main:
            write_json(self.model.config(), self.run_dir / "config.json")

    # -- one step -----------------------------------------------------------------------
    def train_step(self) -> dict[str, torch.Tensor]:
        m, r = self.model, self.recipe
        with self.autocast():
            batch = m.divergence.training_batch(self._data_batch(), generator=self.draw)
            negatives = m.sampler.sample(batch, m.energy, generator=self.draw)
            # energy first, on negatives from the pre-update energy; then the sampler on the same ones
            out = m.divergence.energy_loss(batch, negatives, m.energy)
        metrics = {"loss": out.loss.detach(), **out.metrics}
        norm = self._update("energy", out.loss, list(m.energy.parameters()), f"energy loss ({r.divergence['name']})")
        if norm is not None:
            metrics["grad_norm"] = norm
        # a value function sharing the energy's network (DxMI's TD sweep) takes its steps on the
        # energy's optimizer; each loss is built after the previous step, so targets see it
        value_losses = m.sampler.value_steps(m.energy, generator=self.draw)
        while True:
            with self.autocast():
                v_out = next(value_losses, None)
            if v_out is None:
                break
            self._update("energy", v_out.loss, list(m.energy.parameters()), f"value loss ({r.sampler['name']})")
            metrics.update(v_out.metrics)
        if m.sampler.learnable:
            with frozen(m.energy):  # the sampler's objective reads the just-updated energy, never trains it
                with self.autocast():
                    s_out = m.divergence.sampler_loss(batch, negatives, m.energy, m.sampler, generator=self.draw)
                metrics.update(s_out.metrics)
                self._update("sampler", s_out.loss, list(m.sampler.parameters()),
                             f"sampler loss ({r.divergence['name']} on {r.sampler['name']})")
        self.dist.broadcast_buffers(m)
        self.ema.update_parameters(m)
        self.step += 1
        return metrics

    def _data_batch(self) -> torch.Tensor:
        """This rank's share of ``train.batch_size`` fresh data points (all of it on one process)."""
        x0 = self.dataset.sample(self.recipe.train.batch_size, generator=self.data_generator)
        return self.dist.shard(x0).to(self.device)

    def _adam(self, cls, params, **options):
        """Adam(W) with the recipe's betas and eps, fused on CPU and CUDA: one kernel over all the
        parameters, where the default steps them one by one from Python on a CPU (a tenth of a 2D
        iteration: benchmarks/README.md, speed.py)."""
        tc = self.recipe.train
        return cls(params, betas=tc.betas, eps=tc.eps, fused=self.device.type in ("cpu", "cuda"), **options)

    def _pretrain_sampler(self):
        """Train the sampler alone on its own objective (DxMI fine-tunes a DDPM) before step 1,
        with a fresh Adam that is dropped afterwards; a step-0 checkpoint keeps it on resume."""
        m, tc = self.model, self.recipe.train
        opt = self._adam(torch.optim.Adam, m.sampler.parameters(), lr=tc.pretrain_lr)
        t0 = time.perf_counter()
        for _ in range(tc.pretrain_steps):
            out = m.sampler.pretrain_loss(self._data_batch(), generator=self.draw)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            self.dist.all_reduce_gradients(m.sampler.parameters())
            opt.step()
        self.ema.update_parameters(m)  # the first update copies: the EMA starts from the pretrained sampler
        self._save()
        self.console.print(f"pretrained the sampler: {tc.pretrain_steps} steps in {time.perf_counter() - t0:.0f} s, "
                           f"last loss {out.loss.item():.4f}", soft_wrap=True)

    # -- evaluation ---------------------------------------------------------------------
    def evaluate(self, n: int) -> float:
        """``train.eval_metric`` of n samples of the EMA model, on fixed seeds: SW to n fresh data
        points, or FD-FMNIST to the Fashion-MNIST test set; for images also a grid of the first 64
        samples in samples/step_NNNNNN.png.

        The seeds differ from `ebmkit eval`'s: `keep_best` selects a checkpoint on these draws,
        and scoring the selected one on the same draws would flatter it.
        """
        seed = self.recipe.eval.seed + VALIDATION_SEED_OFFSET
        g_model = torch.Generator(self.device).manual_seed(seed)
        samples = self.ema.module.generate(n, generator=g_model).cpu()
        if self.dataset.is_image:
            (self.run_dir / "samples").mkdir(exist_ok=True)
            save_image_grid(samples[:64], self.run_dir / "samples" / f"step_{self.step:06d}.png")
        if self.recipe.train.eval_metric == "fd_fmnist":
            if self.fd_fmnist is None:
                from ebmkit.metrics.fmnist import FDFMNIST

                self.fd_fmnist = FDFMNIST.for_data(self.recipe.data, device=self.device)
            return self.fd_fmnist(samples)
        data = self.dataset.sample(n, generator=torch.Generator().manual_seed(seed + 1))
        return sliced_wasserstein(samples.flatten(1), data.flatten(1), n_projections=self.recipe.eval.n_projections,
                                  generator=torch.Generator().manual_seed(seed + 2))

    # -- the loop -----------------------------------------------------------------------
    def fit(self) -> EnergyModel:
        try:
            model = self._fit()
        except BaseException:
            self.dist.close(finished=False)
            raise
        self.dist.close(finished=True)
        return model

    def _fit(self) -> EnergyModel:
        self._setup()
        if self.dist.is_main:
            if self.overwrite and not self.resume:
                self._clear_previous_run()
            self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.resume:
            self._load()
            self.console.print(f"[bold]resuming[/] {self.run_dir} at step {self.step}", soft_wrap=True)
        self._write_config()
        if not self.resume:
            if self.recipe.train.pretrain_steps:
                self._pretrain_sampler()
            else:
                self._save()  # step 0: the last good checkpoint a divergence falls back to
        tc = self.recipe.train
        stats = open(self.run_dir / "stats.jsonl", "a") if self.dist.is_main else None
        columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}")]
        t0 = self._t0 = time.perf_counter()
        try:
            with Progress(*columns, console=self.console, disable=not self.progress_enabled) as bar:
                task = bar.add_task(self.recipe.name, total=tc.steps, completed=self.step, info="")
                while self.step < tc.steps:
                    metrics = self.train_step()
                    evaluating = bool(tc.eval_every) and self.step % tc.eval_every == 0
                    logging = evaluating or self.step % tc.log_every == 0 or self.step == tc.steps
                    saving = self.step % tc.checkpoint_every == 0 or self.step == tc.steps
                    if (logging or saving) and self._diverged():
                        continue  # rolled back to the last good checkpoint
                    info = self._log(metrics, evaluating, stats) if logging else None
                    if saving:
                        self._save()
                    bar.update(task, completed=self.step, **({"info": info} if info else {}))
        finally:
            if stats is not None:
                stats.close()
        return self._finish(time.perf_counter() - t0)

    def _log(self, metrics: dict, evaluating: bool, stats) -> str:
        """One stats.jsonl row (metrics averaged over ranks), with the periodic evaluation."""
        tc = self.recipe.train
        metrics = self.dist.mean(metrics)
        row = {"step": self.step, **{k: float(v) for k, v in metrics.items()},
               "lr": self._lr(self.step - 1), "time": time.perf_counter() - self._t0}
        metric = tc.eval_metric
        if evaluating and self.dist.is_main:
            row[metric] = self.evaluate(tc.eval_samples)
            if tc.keep_best and (self.best.get(metric) is None or row[metric] < self.best[metric]):
                self.best = {metric: row[metric], "step": self.step}
                save_tensors(self.ema.module.state_dict(), self.run_dir / "best.safetensors")
        self.history.append(row)
        if stats is not None:
            stats.write(json.dumps(row) + "\n")
            stats.flush()
        return f"loss {row['loss']:+.3g}" + (f"  {metric} {row[metric]:.3f}" if metric in row else "")

    def _diverged(self) -> bool:
        """Whether a loss became non-finite since the last check. With ``on_divergence=stop`` (or
        no rollbacks left) the run stops, naming the step and the loss; the checkpoint on disk
        predates it, since every save is preceded by this check. With ``rollback`` the run goes back
        to that checkpoint and draws from a new seed, recorded in rollbacks.jsonl."""
        found = self._nonfinite()
        if found is None:
            return False
        step, what = found
        tc = self.recipe.train
        if tc.on_divergence == "stop" or self.rollbacks >= tc.max_rollbacks:
            tried = f" after {self.rollbacks} rollbacks" if tc.on_divergence == "rollback" else ""
            raise TrainingError(f"{what} became non-finite at step {step}{tried}; the last good checkpoint is kept in "
                                f"{self.run_dir / 'checkpoint'}")
        self.rollbacks += 1
        rollbacks = self.rollbacks
        self._load()
        self.rollbacks = rollbacks
        seed = tc.seed + 1 + 1_000_003 * rollbacks  # a new stream, reproducible from the record
        self.generator.manual_seed(seed)
        record = {"diverged_at": step, "loss": what, "restarted_from": self.step, "seed": seed}
        if self.dist.is_main:
            with open(self.run_dir / "rollbacks.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
        self.console.print(f"[yellow]rollback {rollbacks}/{tc.max_rollbacks}:[/] {what} became non-finite at step "
                           f"{step}; back to step {self.step} with seed {seed}", soft_wrap=True)
        self._save()  # the new seed and the count, so that a resume repeats this run
        return True

    def _finish(self, seconds: float) -> EnergyModel:
        tc = self.recipe.train
        if not self.dist.is_main:  # rank 0 exports; the others hold the same EMA weights
            return self.ema.module.eval()
        best = self.run_dir / "best.safetensors"
        if tc.keep_best and best.is_file():
            self.ema.module.load_state_dict(load_tensors(best))
        model = self.ema.module.eval()
        model.source_dir = self.run_dir
        save_tensors(model.state_dict(), self.run_dir / "model.safetensors")
        g = torch.Generator(self.device).manual_seed(self.recipe.eval.seed)
        picture = None
        if self.dataset.dim == 2:
            samples = model.generate(2000, generator=g).cpu()
            data = self.dataset.sample(2000, generator=torch.Generator().manual_seed(self.recipe.eval.seed + 1))
            picture = "density.png"
            density_figure(model, data, samples, self.dataset.box, self.run_dir / picture,
                           title=f"{self.recipe.name} on {self.recipe.data['name']}, step {self.step}")
        elif self.dataset.is_image:
            picture = "samples.png"
            save_image_grid(model.generate(64, generator=g).cpu(), self.run_dir / picture)
        self.console.print(
            f"[green]done[/] {self.step} steps in {seconds:.0f} s → {self.run_dir} "
            f"(model.safetensors{', ' + picture if picture else ''})",
            soft_wrap=True,
        )
        return model

