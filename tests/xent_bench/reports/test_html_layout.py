"""The HTML report's layout, measured in a real headless browser at a laptop and a phone width.

The page is built by the report code from a synthetic timing run (real record schema, a ranked
table of 15 columns, plots), a measuring script is added to a copy of it, and headless Chromium
loads that copy and dumps the DOM, which then holds the script's JSON result. Nothing is
installed for this: the test uses a system browser where one is on the PATH and skips with a
note where none is (CI installs Debian's ``chromium``, see ``.ci/run``).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from xent_bench.harness import floor
from xent_bench.harness.records import Record, append_record
from xent_bench.reports import document
from xent_bench.reports import run_report as report

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# A laptop's width (the one of the issue: the verdict column was cut off there) and a phone's.
WIDTHS = (1024, 390)
CEILINGS = {"copy_GBps": 20.0, "read_GBps": 25.0, "exp_Gps": 1.0}

# Added to a copy of the page and run after load: the layout as the reader gets it, as JSON,
# posted to the FRAME page around it. Widths are compared with window.innerWidth (the
# viewport), never with the width asked for. An element "escapes" when it reaches past the
# viewport without an ancestor below <body> that clips or scrolls it: html and body do not
# count, so hiding the page's overflow would not pass for a fix.
MEASURE = r"""
<script>
window.addEventListener("load", () => setTimeout(() => {
  const vw = window.innerWidth, root = document.documentElement, slack = 1;
  const clipper = (el) => {
    for (let a = el.parentElement; a && a !== document.body && a !== root; a = a.parentElement) {
      if (getComputedStyle(a).overflowX !== "visible") return a;
    }
    return null;
  };
  const escaping = [];
  for (const el of document.body.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    if (r.width && (r.right > vw + slack || r.left < -slack) && !clipper(el)) {
      escaping.push(`${el.tagName.toLowerCase()}.${el.className}: `
                    + `${Math.round(r.left)}..${Math.round(r.right)} `
                    + JSON.stringify((el.textContent || "").slice(0, 40)));
    }
  }
  const tables = [...document.querySelectorAll("table")].map((t) => {
    const box = t.parentElement, b = box.getBoundingClientRect();
    const overflowX = getComputedStyle(box).overflowX;
    const fits = t.getBoundingClientRect().right <= b.right + slack;
    const scrolls = (overflowX === "auto" || overflowX === "scroll")
                    && box.scrollWidth > box.clientWidth;
    // The last column (the verdict, in a ranked table) in view once the box is scrolled to
    // its end: reachable, not cut off.
    box.scrollLeft = box.scrollWidth;
    const head = t.querySelector("tr"), last = head.lastElementChild.getBoundingClientRect();
    const end = box.getBoundingClientRect();
    const lastReachable = last.right <= Math.min(end.right, vw) + slack
                          && last.left >= end.left - slack;
    box.scrollLeft = 0;
    return {columns: head.children.length, wrapped: box.classList.contains("table-wrap"),
            box_right: Math.round(b.right), table_width: Math.round(t.scrollWidth),
            box_width: box.clientWidth, overflow_x: overflowX, fits, scrolls,
            last_reachable: lastReachable,
            ok: b.right <= vw + slack && (fits || scrolls) && lastReachable};
  });
  const images = [...document.images].map((img) => {
    const r = img.getBoundingClientRect();
    return {loaded: img.complete && img.naturalWidth > 0, width: Math.round(r.width),
            natural_width: img.naturalWidth,
            ok: img.naturalWidth > 0 && r.left >= -slack && r.right <= vw + slack
                && r.width <= img.parentElement.clientWidth + slack};
  });
  const result = {viewport: vw, scroll_width: root.scrollWidth,
                  viewport_meta: !!document.querySelector('meta[name="viewport"]'),
                  escaping: escaping.slice(0, 10), tables, images};
  if (window.parent !== window) window.parent.postMessage(JSON.stringify(result), "*");
}, 0));
</script>
"""

# The page under test in an <iframe> exactly ``width`` px wide: headless Chromium keeps its
# window at least 500 px wide, so a phone's width is only had this way. The iframe's viewport
# is its box (window.innerWidth inside it), laid out like a browser window of that width;
# the measurement comes back by postMessage (file: pages are of different origins) and is
# written into this page's DOM, which --dump-dom prints.
FRAME = """<!DOCTYPE html><html><head><meta charset="utf-8"><style>
body {{ margin: 0; }} iframe {{ border: 0; width: {width}px; height: {height}px; display: block; }}
</style></head><body><iframe src="{src}"></iframe><script>
window.addEventListener("message", (event) => {{
  const out = document.createElement("pre");
  out.id = "layout-result";
  out.textContent = event.data;
  document.body.appendChild(out);
}});
</script></body></html>
"""


def _browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@pytest.fixture(scope="module")
def browser() -> str:
    path = _browser()
    if path is None:
        pytest.skip(f"no Chromium: none of {', '.join(BROWSERS)} is on the PATH (on Debian: "
                    "apt-get install chromium); the HTML layout is not checked")
    return path


def measure(browser: str, page: str, width: int, tmp_path: Path, height: int = 900) -> dict:
    """Load ``page`` (HTML text) in a ``width`` px viewport of headless Chromium; the MEASURE
    result."""
    name = f"page-{width}-{len(list(tmp_path.glob('page-*-frame.html')))}"
    target = tmp_path / f"{name}.html"
    target.write_text(page.replace("</body>", MEASURE + "</body>", 1), encoding="utf-8")
    frame = tmp_path / f"{name}-frame.html"
    frame.write_text(FRAME.format(width=width, height=height, src=target.name), encoding="utf-8")
    profile = tmp_path / f"{name}.profile"  # a new, empty profile per run
    profile.mkdir()
    # The background-networking flags keep the browser from waiting on a closed network.
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
               "--hide-scrollbars", f"--window-size={max(width, 500) + 20},{height + 20}",
               "--virtual-time-budget=5000", "--dump-dom", frame.resolve().as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    found = re.search(r'<pre id="layout-result">(.*?)</pre>', done.stdout, re.S)
    assert found, (f"no layout result from {browser} (exit {done.returncode}): "
                   f"{done.stderr[-2000:]}")
    return json.loads(html.unescape(found.group(1)))


def problems(result: dict) -> list[str]:
    """What makes the measured page unreadable at its width; empty when it reads well."""
    out = []
    if result["scroll_width"] > result["viewport"] + 1:
        out.append(f"the page scrolls sideways: {result['scroll_width']} px wide in a "
                   f"{result['viewport']} px viewport")
    out += [f"sticks out of the viewport: {e}" for e in result["escaping"]]
    out += [f"table {i} is cut off: {t}" for i, t in enumerate(result["tables"]) if not t["ok"]]
    out += [f"image {i} does not fit: {m}" for i, m in enumerate(result["images"]) if not m["ok"]]
    return out


def _record(impl: str, pass_: str, median_ms: float, c: int) -> Record:
    """An ok timing record (as the runner writes it) whose rounds have the given median."""
    framework, variant, form = impl.split("/")
    cell = {"kind": "timing", "impl": impl, "framework": framework, "form": form,
            "variant": variant, "n": 256, "c": c, "dtype": "float32", "scale": 1.0, "seed": 0,
            "pass": pass_, "device": "cpu"}
    env = {"cpu_model": "Test CPU", "git_commit": "abc123", "device": "cpu",
           "versions": {framework: "9.9"}, "device_name": "cpu", "threads": 2,
           "threads_applied": f"{framework}: 2 threads", "sync": f"{framework} sync",
           "allocator": "default"}
    median = median_ms / 1e3
    times = [median * 0.99, median, median * 1.01] * 3
    summary = {"median_s": median, "q1_s": median * 0.99, "q3_s": median * 1.01,
               "min_s": min(times), "iqr_rel": 0.02, "noisy": 0.0, "rounds": float(len(times)),
               "first_call_s": 10 * median, "compile_s": 9 * median}
    cost = floor.modelled_cost(256, c, "float32", form, pass_)
    check = {"loss_nonfinite": 0, "loss_max_abs": 1e-7, "loss_max_rel": 1e-7, "loss_err_eps": 1.5,
             "grad_nonfinite": 0, "grad_max_abs": 1e-8, "grad_max_rel": 1e-7, "grad_err_eps": 0.5}
    metrics = (summary | cost | check | floor.floor_metrics(cost, pass_, CEILINGS, median)
               | {"peak_extra_bytes": 2.0 * 2**20, "retained_bytes": 2**20} | CEILINGS)
    return Record(run_id="run-layout", cell=cell, env=env, status="ok", metrics=metrics,
                  labels={"cache_mode": "warm (no flush)"}, raw={"times_s": times})


@pytest.fixture(scope="module")
def timing_page(tmp_path_factory) -> str:
    """report.html of a timing run: long implementation ids, ranked tables of 15 columns,
    plots."""
    impls = ("torch/native/sparse", "torch/compiled/sparse", "torch/fused-compiled/onehot",
             "jax/optax-eager/sparse", "jax/chunked/onehot")
    records = [_record(impl, pass_, (1 + i) * (2 if pass_ == "forward_backward" else 1), c)
               for c in (10, 32000) for pass_ in ("forward", "forward_backward")
               for i, impl in enumerate(impls)]
    run = tmp_path_factory.mktemp("layout-run")
    meta = {"run_id": "run-layout", "kind": "timing", "preset": "test", "device": "cpu",
            "threads": 2, "allocator": "default", "budget_s": 0.1, "min_rounds": 5,
            "max_rounds": 50,
            "machine": {"cpu_model": "Test CPU", "git_commit": "abc123", "python": "3.11.7",
                        "platform": "Linux-test", "started": "2026-01-01T00:00:00+00:00",
                        "hostname": "box", "cpu_count": 2},
            "notes": [], "cells": [r.cell for r in records], "finished": "2026-01-01T00:01:00",
            "ceilings": {"per_framework": {"torch": CEILINGS, "jax": CEILINGS},
                         "best": CEILINGS | {f"{k}_by": "torch" for k in CEILINGS}}}
    (run / "meta.json").write_text(json.dumps(meta))
    for rec in records:
        append_record(run, rec)
    return Path(report.write_reports(run)["html"]).read_text(encoding="utf-8")


def test_the_page_is_self_contained_with_a_viewport_and_table_boxes(timing_page):
    assert len(report.TIMING_COLUMNS) == 15
    assert '<div class="table-wrap"><table>' in timing_page
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in timing_page
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", timing_page), "an external resource"


@pytest.mark.parametrize("width", WIDTHS)
def test_the_report_reads_at_this_width(browser, timing_page, width, tmp_path):
    result = measure(browser, timing_page, width, tmp_path)
    assert result["viewport"] == width
    assert result["viewport_meta"]
    ranked = [t for t in result["tables"] if t["columns"] == len(report.TIMING_COLUMNS)]
    assert ranked and all(t["wrapped"] for t in result["tables"])
    assert len(result["images"]) >= 2 and all(m["loaded"] for m in result["images"])
    assert problems(result) == []
    if width >= 1024:  # the case: the whole ranked table in view, verdict included
        assert all(t["fits"] and not t["scrolls"] for t in ranked), ranked
    else:  # on a phone it cannot fit: its box scrolls instead of the page
        assert all(t["scrolls"] and not t["fits"] for t in ranked), ranked


def test_the_measurement_detects_a_page_that_overflows(browser, timing_page, tmp_path):
    """The same check on the page as it was before the fix (a wide table straight in <body>,
    no wrapping box) and on a page that forces a fixed width must report the overflow, so a
    pass above means the layout reads, not that the check sees nothing."""
    unwrapped = (timing_page.replace('<div class="table-wrap"><table>', "<table>")
                 .replace("</table></div>", "</table>"))
    assert "table-wrap\"" not in unwrapped.split("</style>")[1]
    fixed = timing_page.replace("</style>", "body { min-width: 1400px; } </style>", 1)
    for page, width in ((unwrapped, 390), (fixed, 1024)):
        result = measure(browser, page, width, tmp_path)
        found = problems(result)
        assert any("scrolls sideways" in p for p in found), (width, found)
        assert any(not t["ok"] for t in result["tables"]), (width, result["tables"])


def test_plain_tables_and_code_wrap_in_a_narrow_page(browser, tmp_path):
    """Blocks written straight with the document model: an id too long for the line, with no
    hyphen or space to break at, wraps in prose and in a bullet; a captioned table keeps its
    caption outside the scrolling box."""
    long_id = "`torch/" + "fused_compiled_chunked_" * 6 + "/onehot`"
    rows = [{"impl": "torch/native/sparse", **{f"column {k}": f"{k}.000" for k in range(20)},
             "compile s": "4.42e-04"}]
    blocks = [document.Heading(1, "Narrow"), document.Para(f"The fastest was {long_id}."),
              document.Bullets([long_id]),
              document.make_table(rows, caption="A caption that is long enough to wrap at a "
                                                "phone's width when it sits outside the box.")]
    page = document.render_html(blocks, "narrow")
    assert '<td><span class="nb">4.42e-04</span></td>' in page  # never broken after the "-"
    result = measure(browser, page, 390, tmp_path)
    assert problems(result) == []
    (table,) = result["tables"]
    assert table["scrolls"] and table["last_reachable"]
