"""What the training loop reports while it runs, and the rich terminal display the CLI passes it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol





class Display(Protocol):
    """What the loop reports while it runs (rank 0 only). The CLI passes a rich display."""

    def start(self, *, run_dir: Path, first_epoch: int, epochs: int, batches_per_epoch: int) -> None: ...

    def step(self, *, epoch: int, batch: int, values: dict[str, float], images_per_s: float,
             eta_s: float) -> None: ...

    def epoch_end(self, metrics: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class RichDisplay:
    """Live progress (epoch, batch, losses, images/s, ETA) on a terminal; one line per epoch otherwise."""

    _SHOWN = ("d_loss", "g_adv", "g_recon")

    def __init__(self, console) -> None:
        self.console = console
        self.live = bool(console.is_terminal)
        self.progress = None
        self.task = None
        self.epochs = 0

    def start(self, *, run_dir: Path, first_epoch: int, epochs: int, batches_per_epoch: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.epochs = epochs
        self.console.print(f"training into [bold]{run_dir}[/] (epochs {first_epoch}..{epochs}, "
                           f"{batches_per_epoch} batches each)", highlight=False)
        if self.live:
            self.progress = Progress(TextColumn("epoch {task.fields[epoch]}/" + str(epochs)), BarColumn(),
                                     MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                                     console=self.console, transient=False)
            self.task = self.progress.add_task("train", total=batches_per_epoch, epoch=first_epoch, info="")
            self.progress.start()

    def step(self, *, epoch: int, batch: int, values: dict[str, float], images_per_s: float, eta_s: float) -> None:
        if self.progress is None:
            return
        losses = "  ".join(f"{key} {values[key]:.3f}" for key in self._SHOWN if key in values)
        info = f"{losses}  {images_per_s:.1f} img/s  ETA {_duration(eta_s)}"
        self.progress.update(self.task, completed=batch, epoch=epoch, info=info)

    def epoch_end(self, metrics: dict[str, Any]) -> None:
        def fmt(key: str) -> str:
            value = metrics.get(key)
            return "-" if value is None else f"{value:.3f}"

        line = (f"epoch {metrics['epoch']}/{self.epochs}  d_loss {fmt('d_loss')}  g_adv {fmt('g_adv')}  "
                f"g_recon {fmt('g_recon')}  val PSNR {fmt('val_psnr')} dB (gray {fmt('val_psnr_gray')})  "
                f"{metrics['images_per_s']:.1f} img/s")
        if self.progress is not None:
            self.progress.console.print(line, highlight=False)
            if metrics["epoch"] < self.epochs:
                self.progress.reset(self.task, completed=0, epoch=metrics["epoch"] + 1, info="")
        else:
            self.console.print(line, highlight=False)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"
