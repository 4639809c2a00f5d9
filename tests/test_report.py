"""``gatewatch replay --report``: rendered from a shared scenario and opened as a person would,
in headless Chromium (Debian's ``chromium``, installed by ``.ci/run``): the page loads
without script errors, shows every labelled incident as caught with a link to its
incident, and screenshots to a non-blank image. Plus the parts a browser cannot judge:
self-contained, every notification in the timeline, suppression reasons, bounded recording."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from gatewatch.cli import main
from gatewatch.report import render_report
from models.engine import Engine
from models.explain import contributors
from models.recorder import SeriesRecorder
from tests.engine_helpers import T0, traffic
from tests.shared_data import needs_shared, scenarios

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]


def _labelled_scenario():
    return next(p for p in scenarios() if json.loads((p / "labels.json").read_text())["incidents"])


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    path = _labelled_scenario()
    tmp = tmp_path_factory.mktemp("report")
    files = sorted(str(p) for p in path.glob("*.ndjson.gz"))
    code = main(["replay", *files, "--out", str(tmp / "notifs.ndjson"), "--report", str(tmp / "report.html"),
                 "--labels", str(path / "labels.json"), "--quiet"])
    assert code == 0
    labels = json.loads((path / "labels.json").read_text())["incidents"]
    notes = [json.loads(x) for x in (tmp / "notifs.ndjson").read_text().splitlines() if x.strip()]
    return tmp / "report.html", labels, notes


def _chromium(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, *args], capture_output=True, text=True, timeout=timeout)


@needs_shared
@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs Debian's chromium)")
def test_report_opens_in_chromium_without_errors_and_shows_every_label(rendered, tmp_path):
    report, labels, _ = rendered
    dom = _chromium("--dump-dom", report.as_uri()).stdout
    ready = re.search(r'<div id="gw-ready"[^>]*>', dom)
    assert ready, "the page's script never ran to the end (no ready marker)"
    assert 'data-errors="0"' in ready.group(0), ready.group(0)
    assert re.search(r'<div id="gw-errors" hidden="">\s*</div>', dom), "script errors shown on the page"
    assert int(re.search(r'data-figures="(\d+)"', ready.group(0)).group(1)) >= 3
    for label in labels:
        row = re.search(rf"<tr class=\"label (\w+)\" data-label=\"{label['id']}\">(.*?)</tr>", dom, re.S)
        assert row, f"labelled incident {label['id']} not shown"
        assert row.group(1) == "caught", row.group(0)
        for incident in re.findall(r'href="#(gw-[0-9a-f]+)"', row.group(2)):
            assert f'<section class="incident" id="{incident}">' in dom, incident
    shot = tmp_path / "report.png"
    _chromium(f"--screenshot={shot}", "--window-size=1280,2000", report.as_uri())
    from matplotlib.image import imread

    pixels = imread(str(shot))
    assert pixels.shape[0] >= 1000 and pixels.shape[1] == 1280
    assert pixels.std() > 0.05, "the screenshot is blank"


@needs_shared
@pytest.mark.slow
def test_report_is_self_contained_and_logs_every_notification(rendered):
    report, _, notes = rendered
    page = report.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "the report fetches something"
    assert "<link" not in page and "<script src" not in page and "@import" not in page
    for n in notes:
        assert f"id={n['incident']}>" in page
    assert page.count("<tr class=sent>") == len(notes)  # no config silences: every one sent
    assert page.count("<svg") >= 3


def _note(incident, at, labels, category="error_rate", status="firing", reason="new"):
    return {"incident": incident, "status": status, "category": category, "severity": "critical",
            "title": f"{incident} {category}", "at": at, "started_at": at, "labels": labels, "reason": reason,
            "alerts": [{"name": "X", "category": category, "detector": "rule", "value": 0.5, "threshold": 0.2,
                        "labels": labels, "started_at": at, "status": "firing",
                        "explanation": "error rate 50% vs 1% expected; of it: 90% team a, 60% model m"}]}


def test_suppressed_notifications_show_their_reason():
    notes = [_note("gw-outage", "2026-09-14T09:00:00.000Z", {"provider": "openai"}),
             _note("gw-team", "2026-09-14T09:02:00.000Z", {"team": "a", "provider": "openai"}),
             _note("gw-cost", "2026-09-14T09:03:00.000Z", {"team": "b"}, category="cost")]
    silence = {"silences": [{"matchers": ["category=cost"], "starts_at": "2026-09-14T00:00:00Z",
                             "ends_at": "2026-09-15T00:00:00Z", "comment": "budget review"}]}
    page = render_report(notes, {}, [], ["x.ndjson"], raw_config=silence)
    assert "inhibited by provider_outage:gw-outage" in page
    assert "silenced by config-0" in page
    assert page.count("<tr class=sent>") == 1


def test_contributors_are_merged_across_alerts_strongest_first():
    alerts = [{"name": "A", "explanation": "x; of it: 60% model m, 90% team a"},
              {"name": "B", "explanation": "y; of it: 90% team a"}, {"name": "C", "explanation": ""}]
    assert contributors(alerts) == [("90% team a", ["A", "B"]), ("60% model m", ["A"])]


def test_recording_stays_bounded_over_a_long_replay():
    engine = Engine()
    engine.recorder = rec = SeriesRecorder(pre=30, overview_points=50, max_segments=2)
    notes = []
    for ev in traffic(600, 20, start=T0) + traffic(30, 40, start=T0 + 600 * 60, fail_every=2):
        notes += engine.process(ev)
    notes += engine.finish()
    data = rec.export()
    assert all(len(ring) <= 30 for ring in rec.rings.values())
    assert all(len(s["bins"]) <= 50 for s in data["busiest"]) and data["busiest"][0]["width"] >= 8
    assert 1 <= len(data["segments"]) <= 2
    seg = data["segments"][0]
    assert seg["signal"] == "error_rate" and seg["alerts"]
    assert max(p[1] for p in seg["points"] if p[1] is not None) > 0.3  # the failures are in it
    assert seg["points"][0][1] is not None and seg["points"][0][1] < 0.01  # and the calm before
    # rules only (no anomaly models): the figures have no score panel, and still render
    page = render_report(notes, data, [], ["synthetic"], fire_score=None)
    assert page.count("<figure>") == len(data["segments"])
    assert page.count("<svg") == 2 + len(data["segments"])  # timeline, busiest series, segments


def test_a_report_of_bad_input_says_so_and_still_renders(tmp_path):
    garbage = tmp_path / "garbage.ndjson"
    garbage.write_bytes(b"not json\n{\"no\": \"known format\"}\n\xff\xfe\n")
    labels = tmp_path / "labels.yaml"
    labels.write_text("- {start: 2026-09-14T09:00:00Z, end: 2026-09-14T09:10:00Z, category: error_rate}\n")
    report = tmp_path / "r.html"
    code = main(["replay", str(garbage), "--out", str(tmp_path / "n.ndjson"), "--report", str(report),
                 "--labels", str(labels), "--quiet"])
    assert code == 0
    page = report.read_text()
    assert "rejected:      3" in page and "MISSED" in page and "data-label='inc1'" in page
    assert main(["replay", str(garbage), "--out", "-", "--report", str(report), "--labels",
                 str(tmp_path / "missing.yaml")]) == 2
