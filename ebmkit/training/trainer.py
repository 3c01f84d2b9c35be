"""The one training loop every recipe runs on (DESIGN.md, "Data flows one way").

    data ──divergence.training_batch (schedule)──▶ TrainingBatch ──sampler.sample──▶ SampleRecord
         ──divergence.plan──▶ updates, each (parameter group, loss) ──▶ one optimizer step each
         ──▶ EMA, logs, evaluation, checkpoint

The plan is built lazily, so each update sees the parameters the previous one left (DRL:
[energy]; DDAEBM: [energy, sampler]; DxMI: [energy, value × T, policy]); a divergence without
negatives declares so and the sampler is not called. A run is a sequence of phases
(`ebmkit.training.phases`): a ``pretrainable`` sampler's pretraining, then the recipe's phases, each
with its own steps, learning rates, EMA decay and divergence options.

Nothing here is specific to an algorithm. Randomness comes from two explicit generators (data
and training) and, for dropout masks, torch's global stream, whose states are checkpointed, so a
resumed run repeats an uninterrupted one bit for bit on the same machine; periodic evaluation
uses its own seed and never touches the two generators.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.optim.swa_utils import AveragedModel

from ebmkit.data import DATASETS
from ebmkit.data.summary import summarize
from ebmkit.data.transform import Standardize, standardization_for
from ebmkit.loggers.base import missing_package
from ebmkit.loggers.jsonl import read_rows
from ebmkit.model import EnergyModel
from ebmkit.random import ShardedGenerator
from ebmkit.training import rundir
from ebmkit.training.plots import density_figure, save_image_grid
from ebmkit.training.checkpoint import (
    CheckpointError,
    find_checkpoint,
    load_checkpoint,
    load_tensors,
    optimizer_from_flat,
    optimizer_to_flat,
    run_config,
    save_checkpoint,
    save_tensors,
    write_json,
)
from ebmkit.registry import DIVERGENCES
from ebmkit.training import rollback
from ebmkit.training.phases import Phase, phase_at, phases, pretraining_plan
from ebmkit.training.reports import Reports
from ebmkit.training.distributed import Distributed, global_batch_problem
from ebmkit.training.errors import DivergenceError, TrainingError
from ebmkit.training.groups import ParameterGroup, parameter_groups
from ebmkit.training.validation import Validation
from ebmkit.training.watch import Watch


PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

STATE_PREFIX = "state.sampler."  # declared sampler state in the checkpoint's optimizer file, one row per rank

def resolve_device(name: str) -> torch.device:
    """A device name (``train.device``, ``--device``) on this machine."""
    from ebmkit.recipes.base import DEVICE_PATTERN, DEVICES

    if not DEVICE_PATTERN.fullmatch(name):
        raise TrainingError(f"device '{name}' is not one of {DEVICES}")
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
def frozen(*modules: torch.nn.Module):
    """Parameters of ``modules`` get no gradient inside the block (gradients still reach inputs)."""
    params = [p for module in modules for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield modules
    finally:
        for p in params:
            p.requires_grad_(True)


def run_name(recipe) -> str:
    """``recipe-data`` of an automatic run directory ``runs/NNN-recipe-data``."""
    data = recipe.data["name"] if recipe.data["name"] != "file" else Path(recipe.data["path"]).stem
    return f"{recipe.name}-{data}"


@dataclass
class Stepping:
    """What a phase's updates step: an optimizer (and, in fp16, a loss scaler) per parameter group."""

    groups: dict[str, ParameterGroup]
    optimizers: dict[str, torch.optim.Optimizer]
    scalers: dict[str, torch.amp.GradScaler]
    scheduled: bool = True  # warm-up and lr_schedule apply (not in pretraining)


class Trainer:
    """Trains ``recipe`` into ``run_dir``. Under torchrun it is one data-parallel rank: rank 0
    alone writes files and logs, every rank steps the same replica on its share of the batch."""

    def __init__(self, recipe, run_dir=None, *, resume: bool = False, overwrite: bool = False,
                 progress: bool = True, console: Console | None = None):
        self.dist = Distributed.from_env(recipe.train.device)
        self.console = console or Console(stderr=True, quiet=not self.dist.is_main)
        self.progress_enabled = progress and self.dist.is_main
        self.recipe = recipe
        if problem := missing_package(recipe.train.loggers):  # a logger's package: before any work
            raise TrainingError(problem)
        self.resume = resume
        self.overwrite = overwrite and not resume
        self.lock: rundir.Lock | None = None
        self.reports: Reports | None = None  # the loggers (`ebmkit.training.reports`), made in setup
        self._created: list[Path] = []  # folders this run made (removed again if it fails before writing)
        if resume:
            if run_dir is None:
                raise TrainingError("resume needs a run directory")
            self.run_dir = Path(run_dir)
            if find_checkpoint(self.run_dir / "checkpoint") is None:
                raise TrainingError(f"cannot resume '{self.run_dir}': no checkpoint found in it")
            return
        if self.dist.is_main:  # checked before any work, so a bad --out costs nothing
            if run_dir is None:
                run_dir, self._created = rundir.numbered(Path("runs"), run_name(recipe))  # taken now, by us alone
            else:
                run_dir = Path(run_dir)
                self._check_new(run_dir)
                rundir.check_writable(run_dir)
        self.run_dir = Path(self.dist.broadcast_object(str(run_dir)))  # rank 0 numbers a default one

    def _check_new(self, run_dir: Path) -> None:
        """A new run may start in an empty folder, or over an ebmkit run with --overwrite."""
        if not rundir.has_content(run_dir):
            return
        if not self.overwrite:
            raise TrainingError(f"run directory '{run_dir}' already exists; pass --resume to continue it "
                                "or --overwrite to start it again")
        if not rundir.is_run(run_dir):
            raise TrainingError(f"--overwrite: '{run_dir}' is not an ebmkit run (it has no config.json written by "
                                "ebmkit train), so nothing in it is deleted; choose another --out")

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
        self._fit_data()
        r = self.recipe
        torch.manual_seed(tc.seed)  # network initialisation
        self.model = EnergyModel(r, self.dataset.shape, self.transform).to(self.device)
        if tc.pretrain_steps and not self.model.sampler.pretrainable:
            raise TrainingError(f"train.pretrain_steps is {tc.pretrain_steps} but sampler '{r.sampler['name']}' "
                                "has no pretraining objective; set it to 0")
        # buffers too: spectral norm keeps its power-iteration vectors in buffers
        self.ema = AveragedModel(self.model, multi_avg_fn=ema_multi_avg_fn(tc.ema_decay, tc.ema_warmup), use_buffers=True)
        if tc.compile:
            self._compile()
        # one optimizer per parameter group (training/groups.py); an update of a plan names its group
        self.groups = {g.name: g for g in parameter_groups(self.model, tc)}
        self.optimizers = {name: self._adam(g.optimizer, g.torch_groups, lr=g.lr, weight_decay=g.weight_decay)
                           for name, g in self.groups.items()}
        self.phases = phases(tc)
        self.phase: Phase | None = None  # entered at the first step (`_enter`)
        self.divergence = self.model.divergence  # with the phase's options
        self.data_generator = torch.Generator().manual_seed(tc.seed)
        self.generator = torch.Generator(self.device).manual_seed(tc.seed + 1)
        # what components draw from: under data parallelism, this rank's rows of the global draw
        self.draw = ShardedGenerator(self.generator, self.dist.rank, self.dist.world_size) if self.dist.enabled \
            else self.generator
        self.step = 0
        self.best = {tc.eval_metric: None, "step": None}
        try:
            self.validation = Validation(r, self.dataset, self.device, self.run_dir)
        except ValueError as exc:
            raise TrainingError(str(exc)) from None
        self.history: list[dict] = []
        self.reports = Reports(self.recipe, self.run_dir, enabled=self.dist.is_main)  # the loggers, opened in _fit
        self.rollbacks = 0
        self.saved_step: int | None = None  # the step of the checkpoint on disk
        self.watch = Watch(tc, self.device)
        # the data's largest norm, in the data's units: generated samples far beyond it are a divergence
        self.data_radius = float(self.dataset.sample(512, generator=torch.Generator().manual_seed(0))
                                 .flatten(1).norm(dim=1).max())
        # fp16 needs loss scaling (bf16 has fp32's exponent range): one scaler per optimizer
        self.scalers = self._scalers(self.optimizers)
        self.stepping = Stepping(self.groups, self.optimizers, self.scalers)

    def _scalers(self, optimizers: dict) -> dict[str, torch.amp.GradScaler]:
        return {name: torch.amp.GradScaler(self.device.type) for name in optimizers} \
            if self.recipe.train.precision == "fp16" else {}

    def _fit_data(self) -> None:
        """How the model sees the data: its transform (standardisation) and the options measured
        from it ('auto'), fitted on a new run and read back from config.json on a resumed one,
        whose data must be the data it started with. Says what was done in one line."""
        source = {"paths": self.dataset.local_paths(), "sha256": self.dataset.fingerprint()}
        if self.resume:
            config = run_config(self.run_dir)
            self.transform = Standardize.from_config(config.get("data_transform"))
            then = (config.get("data_source") or {}).get("sha256")
            if then is not None and then != source["sha256"]:
                where = ", ".join(source["paths"].values()) or self.recipe.data["name"]
                raise TrainingError(f"the data of '{self.run_dir}' changed since the run started: {where} has sha256 "
                                    f"{source['sha256'][:12]}… where the run recorded {then[:12]}…; resume needs the "
                                    "same data (restore it, or start a new run)")
        else:
            try:
                self.transform = standardization_for(self.dataset, self.recipe.train.standardize)
            except ValueError as exc:
                raise TrainingError(str(exc)) from None
        summary = summarize(self.dataset, self.transform)
        if not self.resume:  # a resumed recipe is the fitted one its run saved
            # absolute paths, so that the run resumes and evaluates from any working directory
            local = {f"data.{key}": path for key, path in source["paths"].items()}
            self.recipe = self.recipe.fitted(summary).override(local)
        self.data_source = source
        done = (f"{self.transform.describe()}: samples, energies and pictures are in the data's units"
                if self.transform is not None else "used as given")
        scale = "" if summary.local_scale is None else f"; local scale {summary.local_scale:.3g} (model units)"
        self.data_line = f"data: {self.dataset!r}, {done}{scale}"  # said once setup has passed every check

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

    def _lr(self, step: int, group: ParameterGroup) -> float:
        """A group's lr at ``step``: the phase's (or the group's own), through warm-up and lr_schedule."""
        if not self.stepping.scheduled:
            return group.lr
        tc = self.recipe.train
        base = self.phase.lr.get(group.name, group.lr) if self.phase is not None else group.lr
        return base * lr_factor(step, tc.warmup, tc.steps, tc.lr_schedule)

    def autocast(self):
        """``train.precision``'s autocast, around forward passes only (backward follows their dtypes)."""
        precision = self.recipe.train.precision
        return torch.autocast(self.device.type, dtype=PRECISIONS[precision], enabled=precision != "fp32")

    def _update(self, name: str, loss: torch.Tensor, what: str) -> torch.Tensor:
        """One optimizer step of a parameter group; returns the gradient norm before clipping.
        ``what`` names the loss to the divergence watch."""
        group, opt = self.stepping.groups[name], self.stepping.optimizers[name]
        parameters = group.parameters()
        self.watch.loss(what, loss, self.step + 1)
        for g in opt.param_groups:
            g["lr"] = self._lr(self.step, group) * g.get("lr_scale", 1.0)
        opt.zero_grad(set_to_none=True)
        scaler = self.stepping.scalers.get(name)
        if scaler is None:
            loss.backward()
        else:  # fp16: scale the loss so small gradients survive, unscale before clipping
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
        self.dist.all_reduce_gradients(parameters)
        if group.grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(parameters, group.grad_clip)
        else:  # the norm alone, for the watch: one fused kernel, no rescaling
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(
                [p.grad for p in parameters if p.grad is not None])))
        self.watch.grad_norm(what, norm, self.step + 1)
        if scaler is None:
            opt.step()
        else:  # skips the step on inf/NaN gradients and lowers the scale; updated after every step, as
            scaler.step(opt)  # the energy's optimizer may step several times per iteration (DxMI)
            scaler.update()
        return norm

    # -- checkpoints --------------------------------------------------------------------
    def _save(self):
        # declared sampler state, every rank's (a collective: before rank 0 alone goes on)
        state_tensors = {f"{STATE_PREFIX}{name}": self.dist.gather(value.detach())
                         for name, value in sorted(self.model.sampler.declared_state.items())}
        if not self.dist.is_main:
            self.saved_step = self.step
            return
        files = {"model": self.model.state_dict(), "ema": self.ema.state_dict(), "optimizer": dict(state_tensors)}
        opt_meta = {}
        for name, opt in self.optimizers.items():
            tensors, meta = optimizer_to_flat(name, opt)
            files["optimizer"].update(tensors)
            opt_meta[name] = meta
        files["optimizer"]["rng.data"] = self.data_generator.get_state()
        files["optimizer"]["rng.train"] = self.generator.get_state().cpu()
        # torch's global stream: what nn.Dropout draws its masks from (the image U-Nets)
        files["optimizer"]["rng.global"] = torch.get_rng_state()
        if self.device.type == "cuda":
            files["optimizer"]["rng.global_cuda"] = torch.cuda.get_rng_state(self.device)
        state = {
            "step": self.step,
            "optimizers": opt_meta,
            "scalers": {name: scaler.state_dict() for name, scaler in self.scalers.items()},
            "rollbacks": self.rollbacks,
            "best": self.best,
            "recipe": self.recipe.model_dump(mode="json"),
        }
        save_checkpoint(self.run_dir / "checkpoint", files, state)
        self.saved_step = self.step  # once it is whole on disk (Ctrl-C may land inside the save)
        self.reports.saved(self.step)

    def _load(self):
        files, state = load_checkpoint(self.run_dir / "checkpoint")
        try:
            self.model.load_state_dict(files["model"], strict=True)
            self.ema.load_state_dict(files["ema"], strict=True)
            for name, opt in self.optimizers.items():
                optimizer_from_flat(name, opt, files["optimizer"], state["optimizers"][name])
            self.data_generator.set_state(files["optimizer"]["rng.data"])
            self.generator.set_state(files["optimizer"]["rng.train"].to(self.generator.device))
            if "rng.global" in files["optimizer"]:  # absent from checkpoints of ebmkit before 2026-12
                torch.set_rng_state(files["optimizer"]["rng.global"])
            if "rng.global_cuda" in files["optimizer"] and self.device.type == "cuda":
                torch.cuda.set_rng_state(files["optimizer"]["rng.global_cuda"], self.device)
        except (KeyError, RuntimeError) as exc:
            raise CheckpointError(f"checkpoint in '{self.run_dir}' does not match its recipe: {exc}") from None
        for key, stacked in files["optimizer"].items():  # declared sampler state: this rank's row
            if key.startswith(STATE_PREFIX):
                if stacked.shape[0] != self.dist.world_size:
                    raise CheckpointError(f"checkpoint in '{self.run_dir}' holds sampler state of {stacked.shape[0]} "
                                          f"process(es); resume it with as many (this is {self.dist.world_size})")
                self.model.sampler.declare_state(key[len(STATE_PREFIX):], stacked[self.dist.rank].to(self.device))
        for name, scaler in self.scalers.items():
            if name in state.get("scalers", {}):
                scaler.load_state_dict(state["scalers"][name])
        self.step = self.saved_step = state["step"]
        self.best = state["best"]
        self.rollbacks = state.get("rollbacks", 0)
        self._since = (self.step, time.perf_counter())  # samples_per_s counts from here
        stats = self.run_dir / "stats.jsonl"
        if stats.is_file() and self.dist.is_main:  # the rows up to the checkpoint (the loggers drop the later ones)
            self.history = [h for h in read_rows(stats) if h["step"] <= self.step]

    def _write_config(self):
        """config.json: the model's config, and where the data came from (local: never pushed)."""
        if self.dist.is_main:
            write_json({**self.model.config(), "data_source": self.data_source}, self.run_dir / "config.json")

    # -- one step -----------------------------------------------------------------------
    def train_step(self) -> dict[str, torch.Tensor]:
        m, divergence = self.model, self.divergence
        if (phase := phase_at(self.phases, self.step)) is not self.phase:
            self._enter(phase)
            divergence = self.divergence
        with self.autocast():
            batch = divergence.training_batch(self._data_batch(), generator=self.draw)
            if divergence.data_batches > 1:  # further independent batches, drawn after the first
                batch.more = tuple(self._data_batch() for _ in range(divergence.data_batches - 1))
            record = None
            if divergence.needs_negatives:
                record = m.sampler.record(batch, m.energy, generator=self.draw)
                self.watch.negatives(f"sampler '{self.recipe.sampler['name']}'", record.negatives, batch.positives,
                                     self.step + 1)
        metrics = self._execute(divergence.plan(batch, record, m.energy, m.sampler, generator=self.draw))
        if record is not None:  # the sampler's own statistics (chain moves)
            metrics = {**record.metrics, **metrics}
        self.dist.broadcast_buffers(m)
        self.ema.update_parameters(m)
        self.step += 1
        return metrics

    def _execute(self, plan) -> dict[str, torch.Tensor]:
        """Run a plan's updates in order over ``self.stepping``. The plan is pulled one update at a
        time: each loss is built after the previous step."""
        names = {"divergence": self.recipe.divergence["name"], "sampler": self.recipe.sampler["name"]}
        metrics = {}
        for update in plan:
            with frozen(*update.frozen):
                with self.autocast():
                    out = update.loss()
                if update.loss_key:
                    metrics[update.loss_key] = out.loss.detach()
                metrics.update(out.metrics)
                norm = self._update(update.group, out.loss, update.what.format(**names))
            if update.grad_key:
                metrics[update.grad_key] = norm
        return metrics

    def _enter(self, phase: Phase) -> None:
        """Start (or, on resume, rejoin) a phase: its divergence options and EMA decay."""
        tc, m = self.recipe.train, self.model
        self.phase = phase
        self.divergence = m.divergence if not phase.divergence else \
            DIVERGENCES.build({**self.recipe.divergence, **phase.divergence}, schedule=m.schedule)
        self.ema.multi_avg_fn = ema_multi_avg_fn(tc.ema_decay if phase.ema_decay is None else phase.ema_decay,
                                                 tc.ema_warmup)
        if len(self.phases) > 1:
            self.console.print(f"phase [bold]{phase.name}[/]: steps {phase.start + 1}–{phase.end}", soft_wrap=True,
                               highlight=False)

    def _data_batch(self) -> torch.Tensor:
        """This rank's share of ``train.batch_size`` fresh data points (all of it on one process), in
        the model's units."""
        x0 = self.dataset.sample(self.recipe.train.batch_size, generator=self.data_generator)
        x0 = self.dist.shard(x0).to(self.device)
        return x0 if self.transform is None else self.transform(x0)

    def _adam(self, cls, params, **options):
        """Adam(W) with the recipe's betas and eps, fused on CPU and CUDA: one kernel over all the
        parameters, where the default steps them one by one from Python on a CPU (a tenth of a 2D
        iteration: benchmarks/README.md, speed.py)."""
        tc = self.recipe.train
        return cls(params, betas=tc.betas, eps=tc.eps, fused=self.device.type in ("cpu", "cuda"), **options)

    def _pretrain(self):
        """The ``pretrain`` phase (`ebmkit.training.phases`): the sampler alone on its own objective
        before step 1, over an Adam of its own that is dropped afterwards; a step-0 checkpoint keeps
        it on resume. A problem the watch finds stops the run: there is nothing to roll back to."""
        m, tc = self.model, self.recipe.train
        group = ParameterGroup("sampler", m.sampler, [{"params": list(m.sampler.parameters())}], torch.optim.Adam,
                               tc.pretrain_lr, 0.0, None)
        optimizers = {"sampler": self._adam(torch.optim.Adam, group.torch_groups, lr=group.lr)}
        self.stepping = Stepping({"sampler": group}, optimizers, self._scalers(optimizers), scheduled=False)
        t0 = time.perf_counter()
        try:
            for _ in range(tc.pretrain_steps):
                metrics = self._execute(pretraining_plan(m.sampler, self._data_batch(), generator=self.draw))
        finally:
            self.stepping = Stepping(self.groups, self.optimizers, self.scalers)
        if (problem := self.watch.check(self.dist)) is not None:
            raise DivergenceError(f"{problem.message} (sampler pretraining)", step=0)
        self.ema.update_parameters(m)  # the first update copies: the EMA starts from the pretrained sampler
        self._save()
        self.console.print(f"pretrained the sampler: {tc.pretrain_steps} steps in {time.perf_counter() - t0:.0f} s, "
                           f"last loss {metrics['pretrain_loss'].item():.4f}", soft_wrap=True)

    # -- evaluation ---------------------------------------------------------------------
    def evaluate(self, n: int) -> float:
        """``train.eval_metric`` of n samples of the EMA model on the validation draws
        (`ebmkit.training.validation`); a sample that blew up stops the run."""
        samples = self.validation.samples(self.ema.module, n)
        self._check_samples(samples, "evaluation samples")
        return self.validation.score(samples, self.step)

    # -- the loop -----------------------------------------------------------------------
    def fit(self) -> EnergyModel:
        if self.dist.is_main:  # one writer per run directory, from here to the end
            self._created += rundir.make_dir(self.run_dir)
            self.lock = rundir.Lock(self.run_dir).acquire()
        try:
            model = self._fit()
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                self._interrupted()
            if self.reports is not None:
                self.reports.close("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
            self.dist.close(finished=False)
            if self.lock is not None:
                self.lock.release()
                rundir.remove_if_unused(self._created)
            raise
        if self.lock is not None:
            self.lock.release()
        self.dist.close(finished=True)
        return model

    def _interrupted(self) -> None:
        """Ctrl-C: which checkpoint is kept (read from disk: the signal may land inside a save),
        and how to go on from it."""
        found = find_checkpoint(self.run_dir / "checkpoint")
        if found is None:
            self.console.print(f"[yellow]interrupted[/] before the first checkpoint; '{self.run_dir}' holds nothing to "
                               "resume", soft_wrap=True, highlight=False)
            return
        kept = json.loads((found / "state.json").read_text())["step"]
        reached = getattr(self, "step", kept)  # not yet set if the signal came during setup
        self.console.print(f"[yellow]interrupted[/] at step {reached}: the checkpoint of step {kept} is kept in "
                           f"{self.run_dir / 'checkpoint'}; continue with: ebmkit train --resume {self.run_dir}",
                           soft_wrap=True, highlight=False)

    def _fit(self) -> EnergyModel:
        if self.dist.is_main and not self.resume:
            self._check_new(self.run_dir)  # again, under the lock: another run may have finished in it meanwhile
        self._setup()
        if self.dist.is_main and self.overwrite:
            rundir.clear(self.run_dir)  # only once the new run has been built
        if self.resume:
            self._load()
            self.console.print(f"[bold]resuming[/] {self.run_dir} at step {self.step}", soft_wrap=True)
        self.console.print(self.data_line, soft_wrap=True, highlight=False)  # every check has passed
        self._write_config()
        self.reports.start(self.step, resumed=self.resume, history=self.history)
        if not self.resume:
            if self.recipe.train.pretrain_steps:
                self._pretrain()
            else:
                self._save()  # step 0: the last good checkpoint a divergence falls back to
        tc = self.recipe.train
        columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}")]
        t0 = self._t0 = time.perf_counter()
        self._since = (self.step, t0)
        with Progress(*columns, console=self.console, disable=not self.progress_enabled) as bar:
            task = bar.add_task(self.recipe.name, total=tc.steps, completed=self.step, info="")
            while self.step < tc.steps:
                metrics = self.train_step()
                evaluating = bool(tc.eval_every) and self.step % tc.eval_every == 0
                logging = evaluating or self.step % tc.log_every == 0 or self.step == tc.steps
                saving = self.step % tc.checkpoint_every == 0 or self.step == tc.steps
                if (logging or saving) and self._diverged():
                    continue  # rolled back to the last good checkpoint
                info = self._log(metrics, evaluating) if logging else None
                if saving:
                    self._save()
                bar.update(task, completed=self.step, **({"info": info} if info else {}))
        return self._finish(time.perf_counter() - t0)

    def _log(self, metrics: dict, evaluating: bool) -> str:
        """One row for the loggers (metrics averaged over ranks: each update's loss and metrics, the
        sampler's statistics, the learning rates, wall time and training samples per second since
        the last row), with the periodic evaluation."""
        tc = self.recipe.train
        metrics = self.dist.mean(metrics)
        (since_step, since), now = self._since, time.perf_counter()
        lrs = {("lr" if i == 0 else f"{name}_lr"): self._lr(self.step - 1, group)  # the energy's is "lr"
               for i, (name, group) in enumerate(self.groups.items())}
        row = {"step": self.step, **{k: float(v) for k, v in metrics.items()}, **lrs, "time": now - self._t0,
               "samples_per_s": tc.batch_size * (self.step - since_step) / (now - since)}
        metric = tc.eval_metric
        if evaluating and self.dist.is_main:
            row[metric] = self.evaluate(tc.eval_samples)
            if tc.keep_best and (self.best.get(metric) is None or row[metric] < self.best[metric]):
                self.best = {metric: row[metric], "step": self.step}
                save_tensors(self.ema.module.state_dict(), self.run_dir / "best.safetensors",
                             self.ema.module.weights_metadata())
        self.history.append(row)
        self.reports.log(row)
        if evaluating and (grid := self.validation.grid(self.step)) is not None:
            self.reports.picture("samples", grid, self.step)
        self._since = (self.step, time.perf_counter())  # the evaluation and the loggers' time is not training's
        return f"loss {row['loss']:+.3g}" + (f"  {metric} {row[metric]:.3f}" if metric in row else "")

    def _diverged(self) -> bool:
        """Whether the divergence watch found a problem since the last check (`ebmkit.training.watch`:
        a non-finite loss, negatives far larger than the positives, a gradient norm grown by orders
        of magnitude); if so the run stops or rolls back (`ebmkit.training.rollback`)."""
        problem = self.watch.check(self.dist)
        if problem is None:
            return False
        rollback.handle(self, problem)
        return True

    def _check_samples(self, samples: torch.Tensor, what: str) -> None:
        """Generated samples (data units) must be finite and within ``max_negative_ratio`` times
        the data's largest norm: a run never ends "done" with garbage."""
        ratio = self.recipe.train.max_negative_ratio
        size = float(samples.flatten(1).norm(dim=1).max()) if len(samples) else 0.0
        if not math.isfinite(size) or (ratio is not None and size > ratio * self.data_radius):
            raise DivergenceError(f"the sampler's {what} blew up at step {self.step}: their largest norm is {size:.3g} "
                                  f"against the data's {self.data_radius:.3g} (train.max_negative_ratio {ratio}); the "
                                  f"last checkpoint (step {self.saved_step}) is kept in {self.run_dir / 'checkpoint'}",
                                  step=self.step)

    def _finish(self, seconds: float) -> EnergyModel:
        tc = self.recipe.train
        if not self.dist.is_main:  # rank 0 exports; the others hold the same EMA weights
            return self.ema.module.eval()
        best = self.run_dir / "best.safetensors"
        if tc.keep_best and best.is_file():
            self.ema.module.load_state_dict(load_tensors(best))
        model = self.ema.module.eval()
        model.source_dir = self.run_dir
        g = torch.Generator(self.device).manual_seed(self.recipe.eval.seed)
        samples = model.generate(64 if self.dataset.is_image else 2000, generator=g).cpu()
        self._check_samples(samples, "final samples")
        save_tensors(model.state_dict(), self.run_dir / "model.safetensors", model.weights_metadata())
        picture = None
        if self.dataset.dim == 2:
            data = self.dataset.sample(2000, generator=torch.Generator().manual_seed(self.recipe.eval.seed + 1))
            picture = "density.png"
            density_figure(model, data, samples, self.dataset.box, self.run_dir / picture,
                           title=f"{self.recipe.name} on {self.recipe.data['name']}, step {self.step}")
        elif self.dataset.is_image:
            picture = "samples.png"
            save_image_grid(samples, self.run_dir / picture)
        if picture:
            self.reports.picture(picture.removesuffix(".png"), self.run_dir / picture, self.step)
        self.reports.close("finished")
        self.console.print(
            f"[green]done[/] {self.step} steps in {seconds:.0f} s → {self.run_dir} "
            f"(model.safetensors{', ' + picture if picture else ''})",
            soft_wrap=True,
        )
        return model

