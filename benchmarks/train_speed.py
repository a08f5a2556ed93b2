"""Speed of Lightning training against a plain PyTorch loop (a benchmark, not a test).

One epoch of ``MnistMLP`` on the 55,000 MNIST training images of ``MNISTDataModule`` (batch 128,
shuffled, validation off), trained

* by ``Trainer.fit`` (``max_epochs=1``, no logger, no checkpointing, no progress bar, no model
  summary, ``limit_val_batches=0``); the epoch is timed by a callback from
  ``on_train_epoch_start`` to ``on_train_end`` (epoch-end metric reduction included), and
  ``fit()`` as a whole is timed too;
* the same, with Lightning's default progress bar on;
* by a plain loop: the same model class used as an ``nn.Module``, the optimizer of its
  ``configure_optimizers`` (Adam 1e-3), a fresh random permutation sliced into batches of 128
  from the in-memory uint8 tensor, scaled to [0, 1] per batch (what the data module's loader does),
  ``cross_entropy``, ``zero_grad``/``backward``/``step``;
* by the same plain loop fed by the data module's own ``DataLoader`` (isolates its cost).

Each repetition starts from the same seed for every variant (same initial weights, same
shuffling). Variants alternate repetition by repetition in one process; medians of the epoch
times and of the *typical step* (median interval between consecutive steps, robust to bursts of
contention on a shared machine) are reported, in wall and in CPU time.

``--ablate`` adds a second phase that splits Lightning's per-step overhead into its causes: the
same comparison with a 16-unit MLP (a step is then mostly fixed cost), with Lightning modules
whose ``training_step`` logs in other ways (no logging and no metric; per-step loss logging only;
a per-step metric call with the loss logged per epoch), next to ``MnistMLP`` as it is (metrics
accumulated with ``update`` and logged once per epoch, the step loss every ``log_every_n_steps``).

Run from the repository root (MNIST from ``$INTERP_DATA_DIR``, default ``../shared/data``)::

    .venv/bin/python -m benchmarks.train_speed             # ~3 min on 2 busy cores
    .venv/bin/python -m benchmarks.train_speed --ablate    # ~4 min, what RESULTS.md shows
    .venv/bin/python -m benchmarks.train_speed --reps 3 --no-write
"""

from __future__ import annotations

import os

# Shared, oversubscribed CPUs: OpenMP threads that spin at barriers make 2-thread kernels up to
# 10x slower and very noisy when another process holds a core. Sleep instead (must be set before
# torch loads its OpenMP runtime); an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import contextlib
import logging
import time
import warnings

import lightning.pytorch as L
import torch
import torch.nn.functional as F

from benchmarks.common import (
    StepClock,
    Stopwatch,
    command_line,
    data_root,
    interleave,
    log,
    machine_header,
    median,
    paired_ratio,
    publish,
    spread,
    table,
)
from interp.data import MNISTDataModule, tensor_loader
from interp.models import MnistMLP

SECTION = "## Training speed (benchmarks/train_speed.py)"


# ----------------------------------------------------------------------------- ablation models
# Same network and optimizer; only what the training step does besides the loss differs. All their
# logging is in ``training_step``: MnistMLP's epoch-end logging of its accumulated metrics is off.


class AblationMLP(MnistMLP):
    """``MnistMLP`` without its ``on_train_epoch_end``: the subclasses do not accumulate its metrics."""

    def on_train_epoch_end(self):
        pass


class NoStepLogMLP(AblationMLP):
    """``train_acc(logits, y)`` called and logged every step (how ``MnistMLP`` logged it before its
    logging was made cheaper), ``train/loss`` logged per epoch only (``on_step=False``)."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.train_acc(logits, y)
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss


class NoMetricMLP(AblationMLP):
    """Per-step ``train/loss`` logging (``on_step=True, on_epoch=True``), no accuracy metric."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss, on_step=True, on_epoch=True)
        return loss


class BareMLP(AblationMLP):
    """Neither logging nor metric: the training step returns the loss, as the plain loop does."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)


# ----------------------------------------------------------------------------- the variants


class EpochTimer(L.Callback):
    """Wall and CPU time from the start of the (only) training epoch to the end of training, and
    a tick at the end of every training step."""

    def __init__(self):
        self.watch = Stopwatch()
        self.clock = StepClock()

    def on_train_epoch_start(self, trainer, pl_module):
        self.watch.start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.clock.tick()

    def on_train_end(self, trainer, pl_module):
        self.watch.stop()


class Runner:
    """Runs one epoch of a variant and keeps its timings.

    ``seed`` is set per repetition (same initial weights and shuffling for every variant),
    ``hidden`` is the width of the MLP, ``limit`` cuts epochs short (warm-up).
    """

    def __init__(self, datamodule: MNISTDataModule, batch_size: int, hidden: int = 512):
        self.dm = datamodule
        self.batch_size = batch_size
        self.hidden = hidden
        self.seed = 0
        self.limit: int | None = None
        self.fit_seconds: dict[str, list[float]] = {}
        self.epoch: Stopwatch | None = None
        self.clock: StepClock | None = None

    def lightning(self, name: str, model_cls=MnistMLP, progress_bar: bool = False) -> None:
        torch.manual_seed(self.seed)
        model = model_cls(hidden=self.hidden)
        timer = EpochTimer()
        trainer = L.Trainer(
            accelerator="cpu",
            devices=1,
            max_epochs=1,
            limit_train_batches=self.limit if self.limit else 1.0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=progress_bar,
            enable_model_summary=False,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            callbacks=[timer],
        )
        # The bar writes to stdout/stderr: send them to /dev/null (the bar's formatting and
        # writes are timed, a terminal's rendering is not).
        with contextlib.ExitStack() as stack:
            if progress_bar:
                devnull = stack.enter_context(open(os.devnull, "w"))
                stack.enter_context(contextlib.redirect_stdout(devnull))
                stack.enter_context(contextlib.redirect_stderr(devnull))
            start = time.perf_counter()
            trainer.fit(model, datamodule=self.dm)
            seconds = time.perf_counter() - start
        if not self.limit:
            self.fit_seconds.setdefault(name, []).append(seconds)
        self.epoch, self.clock = timer.watch, timer.clock

    def plain(self, use_loader: bool = False) -> None:
        torch.manual_seed(self.seed)
        model = MnistMLP(hidden=self.hidden)
        optimizer = model.configure_optimizers()
        model.train()
        watch, clock = Stopwatch(), StepClock()
        watch.start()
        if use_loader:
            batches = tensor_loader(self.dm.train_set, self.batch_size, shuffle=True)
        else:
            images, labels = self.dm.train_set.images, self.dm.train_set.labels
            perm = torch.randperm(images.shape[0])
            batches = ((images[idx].float().div_(255.0), labels[idx]) for idx in perm.split(self.batch_size))
        for i, (x, y) in enumerate(batches):
            if self.limit and i >= self.limit:
                break
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            clock.tick()
        watch.stop()
        self.epoch, self.clock = watch, clock


def run_phase(runner: Runner, variants: dict, reps: int, warmup_batches: int = 30):
    """A short warm-up epoch of every variant, then ``reps`` interleaved epochs of each.

    Returns ``(epoch wall, epoch cpu, typical step wall, typical step cpu)``, each
    ``{name: [seconds per repetition]}``.
    """
    runner.limit = warmup_batches
    for name, fn in variants.items():
        log(f"  warm-up ({warmup_batches} steps): {name}")
        fn()
    runner.limit = None
    counter = {"calls": 0}
    step_wall: dict[str, list[float]] = {}
    step_cpu: dict[str, list[float]] = {}

    def measure(name, fn):
        runner.seed = 1000 + counter["calls"] // len(variants)  # same seed within a repetition
        counter["calls"] += 1
        fn()
        w, c = runner.clock.typical_step()
        step_wall.setdefault(name, []).append(w)
        step_cpu.setdefault(name, []).append(c)
        return runner.epoch.wall, runner.epoch.cpu

    wall, cpu = interleave(variants, reps=reps, warmup=0, measure=measure)
    return wall, cpu, step_wall, step_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions of each variant")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--no-bar", action="store_true", help="skip the variant with the progress bar")
    parser.add_argument(
        "--ablate",
        action="store_true",
        help="also split Lightning's per-step overhead into its causes (about 1.5 min more)",
    )
    parser.add_argument("--ablate-reps", type=int, default=4)
    parser.add_argument(
        "--ablate-hidden",
        type=int,
        default=16,
        help="MLP width of the overhead split (small: the step is mostly overhead)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")

    dm = MNISTDataModule(root=str(data_root()), batch_size=args.batch_size, download=False)
    dm.setup("fit")
    n_train = len(dm.train_set)
    steps = -(-n_train // args.batch_size)
    runner = Runner(dm, args.batch_size)
    log(
        f"MNIST train split: {n_train} images, {steps} steps of {args.batch_size}; "
        f"{args.threads} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}"
    )
    total_start = time.perf_counter()

    base, light, bar = "plain loop (tensor slicing)", "Lightning Trainer.fit", "Lightning, progress bar on"
    loader = "plain loop (same DataLoader)"
    variants = {
        light: lambda: runner.lightning(light),
        base: lambda: runner.plain(use_loader=False),
    }
    if not args.no_bar:
        variants[bar] = lambda: runner.lightning(bar, progress_bar=True)
    variants[loader] = lambda: runner.plain(use_loader=True)
    log(f"phase 1: MnistMLP(hidden=512), {args.reps} repetitions")
    wall, cpu, step_wall, step_cpu = run_phase(runner, variants, args.reps)

    split = None
    if args.ablate:
        bare, loss_only = "Lightning, bare training_step", "Lightning + self.log(train/loss)"
        no_step_log = "Lightning + metric, train/loss on_step=False"
        ablation = {
            base: lambda: runner.plain(use_loader=False),
            loader: lambda: runner.plain(use_loader=True),
            bare: lambda: runner.lightning(bare, BareMLP),
            loss_only: lambda: runner.lightning(loss_only, NoMetricMLP),
            no_step_log: lambda: runner.lightning(no_step_log, NoStepLogMLP),
            light: lambda: runner.lightning("ablation " + light),
        }
        if not args.no_bar:
            ablation[bar] = lambda: runner.lightning("ablation " + bar, progress_bar=True)
        runner.hidden = args.ablate_hidden
        log(f"phase 2: overhead split with MnistMLP(hidden={args.ablate_hidden}), {args.ablate_reps} repetitions")
        split = run_phase(runner, ablation, args.ablate_reps)
        runner.hidden = 512
    total = time.perf_counter() - total_start

    rows = []
    for name in wall:
        fit = runner.fit_seconds.get(name)
        rows.append(
            [
                name,
                f"{median(wall[name]):.3f}",
                spread(wall[name]),
                f"{median(wall[name]) / median(wall[base]):.3f}",
                f"{median(step_wall[name]) * 1e3:.2f}",
                f"{median(step_wall[name]) / median(step_wall[base]):.3f}",
                f"{median(step_cpu[name]) * 1e3:.2f}",
                f"{median(step_cpu[name]) / median(step_cpu[base]):.3f}",
                f"{median(fit):.3f}" if fit else "-",
            ]
        )

    def pct(name, ref, samples):
        return f"{(median(samples[name]) / median(samples[ref]) - 1) * 100:+.1f}%"

    def ms(a, b, samples):
        return f"{(median(samples[a]) - median(samples[b])) * 1e3:+.2f}"

    ratio = median(wall[light]) / median(wall[base])
    ratio_step = median(step_wall[light]) / median(step_wall[base])
    ratio_step_cpu = median(step_cpu[light]) / median(step_cpu[base])
    notes = [
        f"Lightning / plain: **{ratio:.3f}** for the epoch (wall, median of {args.reps}; median of "
        f"the per-repetition ratios {paired_ratio(wall[light], wall[base]):.3f}), **{ratio_step:.3f}** "
        f"for the typical step (wall; {ratio_step_cpu:.3f} in CPU time). Target <= 1.3: epoch "
        f"{'meets' if ratio <= 1.3 else 'misses'}, typical step {'meets' if ratio_step <= 1.3 else 'misses'}.",
    ]
    if bar in wall:
        notes.append(
            f"The default progress bar (TQDM, refreshed every step; output to /dev/null) "
            f"adds {ms(bar, light, step_wall)} ms wall ({ms(bar, light, step_cpu)} ms CPU) per "
            f"typical step, {pct(bar, light, wall)} on the epoch."
        )
    notes.append(
        f"The data module's DataLoader instead of slicing the tensor directly: "
        f"{ms(loader, base, step_wall)} ms wall ({ms(loader, base, step_cpu)} ms CPU) per "
        f"typical step, {pct(loader, base, wall)} on the epoch."
    )
    split_text = []
    if split is not None:
        a_wall, a_cpu, a_step_wall, a_step_cpu = split
        a_rows = []
        for name in a_wall:
            a_rows.append(
                [
                    name,
                    f"{median(a_step_cpu[name]) * 1e3:.3f}",
                    f"{(median(a_step_cpu[name]) - median(a_step_cpu[base])) * 1e3:+.3f}",
                    f"{median(a_step_wall[name]) * 1e3:.3f}",
                    f"{(median(a_step_wall[name]) - median(a_step_wall[base])) * 1e3:+.3f}",
                    f"{median(a_wall[name]):.3f}",
                ]
            )
        loop = ms(bare, base, a_step_cpu)
        step_log = ms(loss_only, bare, a_step_cpu)
        step_metric = ms(no_step_log, bare, a_step_cpu)
        mlp_logging = ms(light, bare, a_step_cpu)
        total_over = ms(light, base, a_step_cpu)
        full_step_plain = median(step_cpu[base]) * 1e3
        split_text = [
            "",
            f"Where Lightning's time goes (`--ablate`): the same epoch with a "
            f"{args.ablate_hidden}-unit MLP, so that a step is mostly fixed per-step cost; "
            f"{args.ablate_reps} interleaved repetitions, typical step. Lightning variants differ "
            f"only in their logging: bare `training_step` (returns the loss); + `self.log('train/loss', "
            f"on_step=True, on_epoch=True)`; a per-step metric (`train_acc(logits, y)` called and logged, "
            f"`train/loss` logged `on_step=False`); and `MnistMLP` as it is (`train_acc.update` and a "
            f"`MeanMetric` of the loss per step, both logged once per epoch in `on_train_epoch_end`, the "
            f"step loss logged every `log_every_n_steps`).",
            "",
            table(
                [
                    "variant",
                    "typical step CPU ms",
                    "CPU over plain ms",
                    "typical step wall ms",
                    "wall over plain ms",
                    "epoch wall s",
                ],
                a_rows,
            ),
            "",
            f"- Per step, in CPU ms: the Lightning loop itself (bare `training_step`) {loop}; on top of "
            f"it, a per-step `self.log('train/loss', ...)` call {step_log}, the per-step metric "
            f"(`train_acc(logits, y)` + logging it, loss logged per epoch) {step_metric}, `MnistMLP`'s "
            f"logging as it is {mlp_logging}; `MnistMLP` in all {total_over} over the plain loop, whose "
            f"whole step with the 512-unit model costs {full_step_plain:.2f} CPU ms here. This fixed "
            f"cost is serial Python: on idle cores, where the plain step's kernels run on both threads, "
            f"it weighs more than its CPU share.",
        ]

    parts = [
        SECTION,
        "",
        machine_header(args.threads),
        "",
        f"Reproduce: `{command_line()}` (MNIST from `$INTERP_DATA_DIR`, default `../shared/data`"
        f"{'' if args.ablate else '; add `--ablate` for the overhead split'}).",
        "",
        f"One epoch of `MnistMLP` (784-512-512-10, Adam 1e-3) over the {n_train} training images "
        f"of `MNISTDataModule`, batch {args.batch_size} ({steps} steps), shuffled, no validation. "
        f"{args.reps} repetitions per variant after a {30}-step warm-up of each, variants interleaved "
        f"(order rotated each repetition), every variant of a repetition from the same seed. "
        f"Lightning's epoch is timed by a callback from `on_train_epoch_start` to `on_train_end`; "
        f"`fit()` is the whole call (Trainer setup included, Trainer construction not).",
        "",
        "The machine is shared: another job taking a core for a while can double an epoch. The "
        "*typical step* is the median interval between the ends of consecutive training steps "
        "(a Lightning callback's `on_train_batch_end`; after `optimizer.step()` in the plain loop), "
        "median over the repetitions: bursts of contention barely move it, so its ratio estimates "
        "the undisturbed one. CPU time (this process, both threads) counts the two threads of the "
        "parallel kernels twice, so its ratios understate serial Python overhead.",
        "",
        table(
            [
                "variant",
                "epoch wall s",
                "min-max s",
                "epoch / plain",
                "typical step wall ms",
                "step / plain",
                "typical step CPU ms",
                "CPU step / plain",
                "fit() wall s",
            ],
            rows,
        ),
        "",
        *[f"- {n}" for n in notes],
        *split_text,
        "",
    ]
    publish(SECTION, parts, total, write=not args.no_write)


if __name__ == "__main__":
    main()
