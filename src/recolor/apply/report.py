"""What an apply run shows and leaves behind: the progress bar, the summary, the contact sheet.

The contact sheet is one static `index.html` in the output folder with relative links to the
before/after images and the outputs, so it opens from disk (or from any copy of the folder).
`contact_page` and `figure` build such a page; `recolor eval --samples` uses them too.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence
from urllib.parse import quote

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TaskID, TextColumn, \
    TimeRemainingColumn
from rich.text import Text

if TYPE_CHECKING:
    from recolor.apply.pipeline import Result, Summary
    from recolor.apply.plan import Plan


class _RateColumn(ProgressColumn):
    """Images (or a task's `unit`, such as fps) per second over the whole run so far (rich's own speed column is
    for bytes)."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        unit = task.fields.get("unit", "img/s")
        if not task.completed or elapsed <= 0:
            return Text(f"-- {unit}", style="progress.data.speed")
        return Text(f"{task.completed / elapsed:.2f} {unit}", style="progress.data.speed")


def apply_progress(console: Console, *, disable: bool = False) -> Progress:
    """The progress bar of `recolor apply`: count, images/s and time left (`disable`: none shown)."""
    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    _RateColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console, transient=False,
                    disable=disable)


def add_frames_task(progress: Progress, plan: Plan) -> TaskID | None:
    """A second bar that counts the frames of the plan's videos (None when it holds none); its total
    grows as each video is opened (`expect_frames`)."""
    from recolor.io.video import is_video

    if not any(is_video(job.source) for job in plan.jobs):
        return None
    return progress.add_task("frames", total=None, unit="fps", start=False)


def expect_frames(progress: Progress, task: TaskID | None, frames: int | None) -> None:
    """Add a video's frame count (None: unknown, the bar shows no total) to the frames bar."""
    if task is None:
        return
    progress.start_task(task)
    current = next(t.total for t in progress.tasks if t.id == task)
    progress.update(task, total=None if frames is None else (current or 0) + frames)


def print_plan(plan: Plan, console: Console, *, dry_run: bool) -> None:
    """The skipped count and notes; with `dry_run`, the output folder and every input -> output pair
    (relative to it, so the layout shows) too."""
    # Messages, not layout: the terminal wraps them (rich would break a path at its own width).
    for note in plan.notes:
        console.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
    if plan.skipped:
        console.print(f"skipping {len(plan.skipped)} image(s) whose output already exists in {plan.out} "
                      "(--overwrite redoes them)", highlight=False, markup=False, soft_wrap=True)
    if dry_run:
        console.print(f"output folder: {plan.out}", highlight=False, markup=False, soft_wrap=True)
        for job in plan.jobs:
            line = f"would colorize {job.source} -> {job.output.relative_to(plan.out).as_posix()}"
            if job.compare is not None:
                line += f" (before/after: {job.compare.relative_to(plan.out).as_posix()})"
            console.print(line, highlight=False, markup=False, soft_wrap=True)
        console.print(f"dry run: {len(plan.jobs)} to colorize, {len(plan.skipped)} skipped, nothing written",
                      highlight=False, soft_wrap=True)


def print_summary(summary: Summary, console: Console, error_console: Console) -> None:
    """One line of counts and time, then one line per failed file with its reason."""
    rate = f", {summary.images_per_second:.2f} images/s" if summary.done > summary.videos else ""
    if summary.frames:
        rate += f", {summary.frames} video frames at {summary.frames_per_second:.2f} frames/s"
    console.print(f"done {summary.done}, skipped {summary.skipped}, failed {len(summary.failed)} "
                  f"in {summary.seconds:.1f} s{rate}", highlight=False)
    for result in summary.failed:
        reason = result.error.cause if result.error is not None else "unknown"
        if result.error is not None and result.error.fix:
            reason += f" → {result.error.fix}"
        # Paths and reasons may hold [brackets], which rich would take for markup.
        error_console.print(f"[red]failed:[/] {escape(str(result.job.source))}: "
                            f"{escape(_without_path(reason, result.job.source))}", highlight=False, soft_wrap=True)


def _without_path(reason: str, path: Path) -> str:
    """Image errors start with the file's path; the failure line already names it."""
    prefix = f"{path}: "
    return reason[len(prefix):] if reason.startswith(prefix) else reason


# ------------------------------------------------------------------------------- contact sheet

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; background: #fafafa; color: #222; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 1.2rem; }}
figure {{ margin: 0; background: #fff; padding: .6rem; border: 1px solid #ddd; }}
figure img {{ width: 100%; height: auto; display: block; }}
figcaption {{ font-size: .85rem; margin-top: .4rem; word-break: break-all; }}
.failed {{ color: #a00; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p>{intro}</p>
<div class="grid">
{figures}
</div>
{extra}
</body>
</html>
"""


def _link(path: Path, root: Path) -> str:
    return quote(path.relative_to(root).as_posix())


def figure(*, href: Path, image: Path, root: Path, alt: str, caption_html: str) -> str:
    """One figure of a contact page: `image` shown, linking to `href`, both relative to the page's `root`."""
    return (f'<figure><a href="{_link(href, root)}"><img loading="lazy" src="{_link(image, root)}" '
            f'alt="{html.escape(alt)}"></a><figcaption>{caption_html}</figcaption></figure>')


def contact_page(*, title: str, intro_html: str, figures: list[str], extra_html: str = "") -> str:
    """A static HTML page: a title, a paragraph, a grid of `figure`s and whatever follows them."""
    return _PAGE.format(title=html.escape(title), intro=intro_html, figures="\n".join(figures), extra=extra_html)


def made_at() -> str:
    return html.escape(time.strftime("%Y-%m-%d %H:%M"))


def write_index(plan: Plan, failed: Sequence[Result]) -> Path:
    """Write `plan.out/index.html`: every output that has a before/after image, and the `failed` jobs."""
    from recolor.io.atomic import atomic_write

    failed_jobs = {id(r.job) for r in failed}
    figures = []
    for job in sorted(plan.jobs + plan.skipped, key=lambda j: str(j.output)):
        if job.compare is None or id(job) in failed_jobs or not job.compare.exists() or not job.output.exists():
            continue
        name = job.output.relative_to(plan.out).as_posix()
        figures.append(figure(href=job.output, image=job.compare, root=plan.out, alt=name,
                              caption_html=f"{html.escape(name)}<br><small>from {html.escape(str(job.source))}</small>"))
    failures = ""
    if failed:
        items = "".join(f"<li>{html.escape(str(r.job.source))}: {html.escape(r.error.cause)}</li>"
                        for r in failed if r.error is not None)
        failures = f'<h2 class="failed">Failed</h2><ul class="failed">{items}</ul>'
    page = contact_page(title="recolor: before and after",
                        intro_html=f"{len(figures)} image(s), before (left) and after (right); made {made_at()}. "
                                   "Click an image for the full-size result.",
                        figures=figures, extra_html=failures)
    path = plan.out / "index.html"
    plan.out.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda file: file.write(page.encode("utf-8")))
    return path
