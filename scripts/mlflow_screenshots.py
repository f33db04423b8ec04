"""Regenerate the screenshots of docs/mlflow.md from a real sweep shown by a real ``mlflow ui``.

Needs two tools that are not dependencies of the project:

    pip install playwright      # the Python driver only; do not run `playwright install`
    apt install chromium        # the browser it drives (/usr/bin/chromium, or pass --chromium)

Runs a 4-job sweep (``optimizer.mu`` × ``force.weight``, 30 epochs on tests/fixtures/tio2-small)
through ``python -m aenet_exp train -m`` into a temporary SQLite store; checks every search filter
printed in docs/mlflow.md against that store (and that a metric name with ``/`` is rejected without
backticks); starts ``mlflow ui`` on the store; drives headless Chromium through the workflow the page
describes; writes the PNGs into ``--out`` only when all of them were taken; and writes the MLflow
version into the page's last line. About 75 s on 2 CPU cores.

The clicks follow the UI of MLflow 3.17. When a later MLflow moves something, the script stops naming
the step that failed, keeps its temporary folder with a picture of the page at that moment, and
leaves the pictures in ``--out`` as they were.

Usage::

    python scripts/mlflow_screenshots.py [--out docs/figures/mlflow] [--keep] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "mlflow.md"
FIXTURE = ROOT / "tests" / "fixtures" / "tio2-small"
SWEEP_OVERRIDES = [
    f"data.path={FIXTURE}",
    "data.E_atomic={O: -432.503149303, Ti: -1604.604515075}",
    "force=subsampled",
    "iterations=30",
    "optimizer.mu=1e-3,3e-3",
    "force.weight=0.1,0.3",
    "tracking.show_progress=false",
]
SWEPT_PARAMS = ["optimizer.mu", "force.weight"]
ERROR_METRICS = ["final/test/energy_rmse", "final/test/force_rmse"]
REJECTED_FILTER = "metrics.test/energy_rmse < 0.02"  # the doc warns that this form fails
FILTER_SECTION = "## Filter runs"  # the doc's filters: the first fenced block under this heading
PARENT_PLACEHOLDER = "<parent run id>"
VERSION_LINE = re.compile(r"(taken with MLflow )\S+?(\.?)$", re.MULTILINE)
VIEWPORT = {"width": 1400, "height": 900}
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
# What a user sets once in the UI, and the browser remembers: the "Model training" side of the
# GenAI / Model training switch, and the MLflow Assistant panel closed.
UI_PREFERENCES = """
localStorage.setItem('mlflow.workflowType_v1', '"machine_learning"');
localStorage.setItem('mlflow.assistant.panelOpen_v1', 'false');
localStorage.setItem('mlflow.assistant.fab.autoOpenedOnFirstLoad_v1', 'true');
"""


@dataclass
class Sweep:
    """The recorded sweep: its experiment, parent run and job runs (best final test energy first)."""

    tracking_uri: str
    experiment_id: str
    parent_id: str
    job_ids: list[str]
    metric_keys: list[str]  # of the best job


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures" / "mlflow", help="where the PNGs go")
    parser.add_argument("--keep", action="store_true", help="keep the temporary sweep folder and MLflow store")
    parser.add_argument("--chromium", type=Path, default=Path("/usr/bin/chromium"), help="the Chromium binary")
    return parser.parse_args(argv)


def require_tools(chromium: Path):
    """Playwright's ``sync_playwright``; exits with a one-line message when Playwright or Chromium is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sys.exit("mlflow_screenshots: Playwright is missing: pip install playwright (no `playwright install` needed)")
    if not os.access(chromium, os.X_OK):
        sys.exit(f"mlflow_screenshots: no Chromium at {chromium}: apt install chromium, or pass --chromium PATH")
    return sync_playwright


def run_sweep(work: Path) -> str:
    """Train the sweep through the CLI in ``work``; the tracking URI of its store."""
    tracking_uri = f"sqlite:///{work / 'mlflow.db'}"
    command = [sys.executable, "-m", "aenet_exp", "train", "-m", *SWEEP_OVERRIDES, f"tracking.uri={tracking_uri}"]
    print("== sweep:", " ".join(command[3:]), flush=True)
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"mlflow_screenshots: the sweep failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return tracking_uri


def read_sweep(tracking_uri: str) -> Sweep:
    """The sweep's runs as MLflow recorded them."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("aenet_exp")
    runs = client.search_runs([experiment.experiment_id])
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    jobs = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    if len(parents) != 1 or len(jobs) != 4:
        sys.exit(f"mlflow_screenshots: expected 1 sweep run and 4 jobs, found {len(parents)} and {len(jobs)}")
    jobs.sort(key=lambda run: run.data.metrics[ERROR_METRICS[0]])
    return Sweep(tracking_uri, experiment.experiment_id, parents[0].info.run_id, [run.info.run_id for run in jobs],
                 sorted(jobs[0].data.metrics))


def filters_in_doc(doc: Path) -> list[str]:
    """The search filters the doc prints: the lines of the first fenced block under ``FILTER_SECTION``."""
    text = doc.read_text()
    start = text.find(FILTER_SECTION)
    block = re.search(r"^```\w*\n(.*?)^```", text[start:], re.MULTILINE | re.DOTALL) if start >= 0 else None
    if block is None:
        sys.exit(f"mlflow_screenshots: {doc} has no fenced block of filters under '{FILTER_SECTION}'")
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def check_filters(sweep: Sweep, filters: list[str]) -> None:
    """Exits when MLflow rejects one of ``filters``, one finds no run, or MLflow accepts ``REJECTED_FILTER``."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(sweep.tracking_uri)

    def search(text: str) -> int:
        return len(client.search_runs([sweep.experiment_id], text.replace(PARENT_PLACEHOLDER, sweep.parent_id)))

    for text in filters:
        try:
            found = search(text)
        except MlflowException as error:
            sys.exit(f"mlflow_screenshots: MLflow rejects the doc's filter {text!r}: {error.message.splitlines()[0]}")
        print(f"   filter {text!r}: {found} of {1 + len(sweep.job_ids)} runs", flush=True)
        if found == 0:
            sys.exit(f"mlflow_screenshots: the doc's filter {text!r} finds no run of the sweep")
    try:
        search(REJECTED_FILTER)
    except MlflowException:
        return
    sys.exit(f"mlflow_screenshots: MLflow now accepts {REJECTED_FILTER!r}; update the doc's warning about backticks")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def mlflow_ui(tracking_uri: str, work: Path, timeout_s: float = 180.0):
    """``mlflow ui`` on the store, in its own process group; yields its base URL and stops the whole group."""
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no background job runner
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri,
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    base_url = f"http://127.0.0.1:{port}"
    with open(work / "mlflow_ui.log", "w") as log:
        server = subprocess.Popen(command, cwd=work, stdout=log, stderr=subprocess.STDOUT, env=env,
                                  start_new_session=True)
        try:
            wait_for_http(base_url, server, timeout_s, work / "mlflow_ui.log")
            print(f"== mlflow ui at {base_url}", flush=True)
            yield base_url
        finally:
            stop_process_group(server)


def wait_for_http(url: str, server: subprocess.Popen, timeout_s: float, log: Path) -> None:
    """Returns once ``url`` answers; exits when the server died, raises TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"mlflow_screenshots: mlflow ui exited ({server.returncode}):\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"mlflow ui did not answer at {url} within {timeout_s:.0f} s")


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM to the process group of ``process`` (the server and its workers); SIGKILL what is left after 15 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        process.poll()  # reaps the group leader once it exits
        if not group_alive(process.pid):
            return
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def group_alive(pgid: int) -> bool:
    """Whether any process of the group ``pgid`` is left."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


# --- the pictures -----------------------------------------------------------------------------------------------------


def settle(page, seconds: float = 1.0) -> None:
    """Gives data and charts ``seconds`` to arrive and draw (the runs page polls, so the network is never idle)."""
    page.wait_for_timeout(seconds * 1000)


def save(page, out: Path, name: str, clip: dict | None = None) -> None:
    """Screenshot of the viewport (or ``clip``) with the mouse out of the way."""
    page.mouse.move(2, page.viewport_size["height"] - 2)
    page.wait_for_timeout(300)
    page.screenshot(path=str(out / name), clip=clip)
    print(f"   {name}", flush=True)


def header(page, column: str):
    """The header cell of the runs-table column ``column`` (an ag-grid col-id)."""
    return page.locator(f'.ag-header-cell[col-id="{column}"]')


def set_column_width(page, column: str, width: float) -> None:
    """Drags the right edge of the table column ``column`` (an ag-grid col-id) to make it ``width`` px wide."""
    handle = header(page, column).locator(".ag-header-cell-resize").bounding_box()
    dx = width - header(page, column).bounding_box()["width"]
    x, y = handle["x"] + 1.5, handle["y"] + handle["height"] / 2  # the left half lies inside the column
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y, steps=10)
    page.mouse.up()
    page.wait_for_timeout(300)


def autosize_column(page, column: str) -> None:
    """Double-clicks the right edge of the column: ag-grid fits it to its content."""
    header(page, column).locator(".ag-header-cell-resize").dblclick()
    page.wait_for_timeout(300)


def tree_item(page, label: str):
    """An entry of the column selector with exactly this label."""
    return page.locator(".du-bois-light-tree-title").filter(has_text=re.compile(f"^{re.escape(label)}$"))


def open_runs_table(page, base_url: str, sweep: Sweep) -> None:
    """The experiment's runs page, once the sweep's row is there."""
    page.goto(f"{base_url}/#/experiments/{sweep.experiment_id}/runs")
    page.locator(f'[role=row][row-id="{sweep.parent_id}"]').first.wait_for()
    settle(page)


def choose_columns(page, out: Path) -> None:
    """Adds the swept params and the final test errors through Columns; drops Source and Models;
    saves columns.png (the selector, searching for a param)."""
    page.get_by_role("button", name="Columns").click()
    search = page.get_by_placeholder("Search columns")
    for name in SWEPT_PARAMS + ERROR_METRICS:
        search.fill(name)
        tree_item(page, name).click()
        if name == SWEPT_PARAMS[0]:
            box = page.locator(".du-bois-light-tree").bounding_box()
            button = page.get_by_role("button", name="Columns").bounding_box()
            save(page, out, "columns.png", clip={"x": button["x"] - 16, "y": button["y"] - 16, "width": 440,
                                                  "height": box["y"] + box["height"] + 70 - button["y"]})
    search.fill("")
    for name in ("Source", "Models"):
        tree_item(page, name).click()
    page.keyboard.press("Escape")
    settle(page, 0.5)


def shoot_runs_table(page, base_url: str, sweep: Sweep, out: Path) -> None:
    """runs_table.png: the sweep expanded, with the chosen columns narrowed or widened to fit the page."""
    open_runs_table(page, base_url, sweep)
    page.get_by_role("button", name="Toggle sidebar").click()
    choose_columns(page, out)
    page.locator(f'[role=row][row-id="{sweep.parent_id}"] [col-id="attributes.`Run Name`"] button').first.click()
    page.locator(f'[role=row][row-id="{sweep.job_ids[0]}"]').first.wait_for()
    set_column_width(page, "runDateAndNestInfo", 120)
    set_column_width(page, "attributes.`Dataset`", 200)
    for name in SWEPT_PARAMS:
        set_column_width(page, f"params.`{name}`", 95)
    for name in ERROR_METRICS:
        autosize_column(page, f"metrics.`{name}`")
    autosize_column(page, "attributes.`Run Name`")
    settle(page, 0.5)
    save(page, out, "runs_table.png")


def shoot_dataset(page, sweep: Sweep, out: Path) -> None:
    """dataset.png: what clicking a job's Dataset cell shows (the drawer, cropped)."""
    page.locator(f'[role=row][row-id="{sweep.job_ids[0]}"] [col-id="attributes.`Dataset`"] button').first.click()
    page.get_by_text("Data details for").wait_for()
    settle(page, 1)
    drawer = page.get_by_text("Data details for").bounding_box()
    bottom = page.get_by_text("Path:", exact=False).last.bounding_box()
    x = drawer["x"] - 24
    save(page, out, "dataset.png", clip={"x": x, "y": 0, "width": VIEWPORT["width"] - x,
                                          "height": bottom["y"] + bottom["height"] + 24})
    page.keyboard.press("Escape")
    page.get_by_text("Data details for").wait_for(state="hidden")


def open_compare(page, sweep: Sweep) -> None:
    """Ticks the four jobs in the runs table and presses Compare."""
    for run_id in sweep.job_ids:
        page.locator(f'[role=row][row-id="{run_id}"] .ag-selection-checkbox').first.click()
    page.get_by_role("button", name=re.compile("^Compare")).click()
    page.get_by_text(f"Comparing {len(sweep.job_ids)} Runs").wait_for()
    settle(page, 2)


def shoot_parallel_coordinates(page, out: Path) -> None:
    """parallel_coordinates.png: the swept params against the final test errors."""
    metrics = page.locator(".du-bois-light-select-multiple").nth(1)  # the second select: Metrics
    while metrics.locator(".du-bois-light-select-selection-item-remove").count():
        metrics.locator(".du-bois-light-select-selection-item-remove").first.click()
    metrics.locator("input").click()  # the search field; the select's middle may be a tag's remove icon
    for name in ERROR_METRICS:
        page.keyboard.type(name)
        page.locator(".du-bois-light-select-item-option").filter(has_text=re.compile(f"^{re.escape(name)}$")).click()
    page.keyboard.press("Escape")
    page.get_by_text(ERROR_METRICS[-1], exact=True).last.wait_for()
    settle(page, 2)
    bottom = page.get_by_text("Run details", exact=True).bounding_box()["y"] - 16
    save(page, out, "parallel_coordinates.png", clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": bottom})


def shoot_compare(page, out: Path) -> None:
    """compare.png: run details, the params that differ and the metrics, side by side."""
    for switch in page.get_by_text("Show diff only").all():
        switch.click()
    page.get_by_text("Run details", exact=True).evaluate("e => e.scrollIntoView({block: 'start'})")
    settle(page, 0.5)
    save(page, out, "compare.png")


def collapse_sections_but(page, keep: str, sections: list[str]) -> None:
    """Collapses every chart section (a metric-name prefix) except ``keep``, then scrolls back to the first."""
    for section in sections:
        if section != keep:
            page.get_by_text(section, exact=True).first.click()
            page.wait_for_timeout(300)
    page.get_by_text(sections[0], exact=True).first.evaluate("e => e.scrollIntoView({block: 'center'})")


def sections_of(metric_keys: list[str]) -> list[str]:
    """The chart sections MLflow makes of these metric names: their prefixes before the last ``/``."""
    return sorted({key.rsplit("/", 1)[0] for key in metric_keys if "/" in key})


def widen_run_list(page, dx: float) -> None:
    """Drags the divider between the run list and the charts ``dx`` px to the right."""
    grid = page.locator(".ag-root-wrapper").first.bounding_box()
    x, y = grid["x"] + grid["width"] + 5, grid["y"] + grid["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y, steps=10)
    page.mouse.up()


def shoot_charts(page, base_url: str, sweep: Sweep, out: Path) -> None:
    """charts.png: the runs page in chart mode, the per-epoch test errors of all jobs overlaid."""
    open_runs_table(page, base_url, sweep)
    page.locator("label").filter(has=page.locator("input[value=CHART]")).click()
    widen_run_list(page, 130)
    page.get_by_placeholder("Search metric charts").fill("test/")
    settle(page, 1)
    collapse_sections_but(page, "test", [section for section in sections_of(sweep.metric_keys) if "test" in section])
    settle(page, 2)
    save(page, out, "charts.png")


def shoot_run(page, base_url: str, sweep: Sweep, out: Path) -> None:
    """run_metrics.png (the best job's per-epoch test errors) and run_artifacts.png (its parity plot)."""
    page.goto(f"{base_url}/#/experiments/{sweep.experiment_id}/runs/{sweep.job_ids[0]}")
    page.get_by_role("tab", name="Model metrics").click()
    page.get_by_text("test", exact=True).first.wait_for()
    settle(page, 1)
    collapse_sections_but(page, "test", sections_of(sweep.metric_keys))
    settle(page, 2)
    save(page, out, "run_metrics.png")
    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_text("parity.png", exact=True).click()
    page.locator("img[src^='blob:']").first.wait_for()  # the preview
    settle(page, 1)
    save(page, out, "run_artifacts.png")


def take_screenshots(sync_playwright, chromium: Path, base_url: str, sweep: Sweep, out: Path) -> None:
    """Every picture of the doc into ``out``; on failure a picture of the page as it was, failed.png, too."""
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport=VIEWPORT)
            context.add_init_script(UI_PREFERENCES)
            page = context.new_page()
            try:
                shoot_runs_table(page, base_url, sweep, out)
                shoot_dataset(page, sweep, out)
                open_compare(page, sweep)
                shoot_parallel_coordinates(page, out)
                shoot_compare(page, out)
                shoot_charts(page, base_url, sweep, out)
                shoot_run(page, base_url, sweep, out)
            except Exception:
                page.screenshot(path=str(out.parent / "failed.png"))
                raise
        finally:
            browser.close()


def publish(staging: Path, out: Path) -> None:
    """Copies the PNGs into ``out``, over the earlier ones of the same names."""
    out.mkdir(parents=True, exist_ok=True)
    for png in sorted(staging.glob("*.png")):
        shutil.copyfile(png, out / png.name)
        print(f"   {out / png.name}: {png.stat().st_size // 1024} KB")


def stamp_version(doc: Path) -> None:
    """Writes the installed MLflow version into the doc's line 'taken with MLflow X'."""
    import mlflow

    text = doc.read_text()
    stamped = VERSION_LINE.sub(rf"\g<1>{mlflow.__version__}\g<2>", text, count=1)
    if stamped == text and f"taken with MLflow {mlflow.__version__}" not in text:
        sys.exit(f"mlflow_screenshots: {doc} has no line ending 'taken with MLflow <version>.'")
    doc.write_text(stamped)


def main(argv=None) -> int:
    args = parse_args(argv)
    sync_playwright = require_tools(args.chromium)
    filters = filters_in_doc(DOC)
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="mlflow_screenshots_"))
    keep = args.keep
    try:
        sweep = read_sweep(run_sweep(work))
        check_filters(sweep, filters)
        with mlflow_ui(sweep.tracking_uri, work) as base_url:
            take_screenshots(sync_playwright, args.chromium, base_url, sweep, work / "png")
        publish(work / "png", args.out)
        stamp_version(DOC)
    except BaseException:
        keep = True
        raise
    finally:
        if keep:
            print(f"== kept {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"== done in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
