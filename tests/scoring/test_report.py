"""The HTML token-analysis report: escaping and content, then in a real headless Chromium against
the real inference server (colours follow the server's ranks; a screenshot is produced)."""

from __future__ import annotations

import base64
import io
import json
import os
import select
import shutil
import struct
import subprocess
import time
import zlib
from collections.abc import Iterator
from contextlib import redirect_stdout, suppress
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from scoring import cli
from scoring.client import ScoringClient
from scoring.local_server import LocalServer
from scoring.report import BUCKETS, bucket_of, render_report

HOSTILE = '<script>window.__byomPwned = 1</script><img src=x onerror="alert(1)"> & "quotes"'
TEXTS = [
    "Azure Machine Learning serves the model behind a managed online endpoint, and the "
    "application calls it with a token from its managed identity.\nNo keys are stored anywhere.",
    "Colorless green ideas sleep furiously beneath quantum marmalade.",
    HOSTILE,
]
# Set to a path (e.g. docs/images/token-report.png) to keep the screenshot for the docs.
SCREENSHOT_ENV = "BYOM_REPORT_SCREENSHOT"


def token(
    text: str,
    rank: int | None,
    logprob: float | None = None,
    top: tuple[tuple[str, float], ...] = (),
) -> dict[str, Any]:
    """One analysed token, as the server returns it (ids: a checksum of the text)."""
    if rank is not None and logprob is None:
        logprob = -0.5 * rank**0.5
    return {
        "id": zlib.crc32(text.encode()),
        "token": text,
        "logprob": logprob,
        "rank": rank,
        "top": [{"id": zlib.crc32(t.encode()), "token": t, "logprob": lp} for t, lp in top],
    }


def analysis(tokens: list[dict[str, Any]]) -> dict[str, Any]:
    """A text analysis with a summary consistent with its tokens."""
    scored = [t for t in tokens if t["rank"] is not None]
    counts = {b.key: 0 for b in BUCKETS}
    for t in scored:
        counts[bucket_of(t["rank"]).key] += 1
    mean = sum(t["logprob"] for t in scored) / len(scored) if scored else None
    return {
        "tokens": tokens,
        "summary": {
            "num_tokens": len(tokens),
            "scored_tokens": len(scored),
            "mean_logprob": mean,
            "perplexity": None if mean is None else 2.718281828 ** (-mean),
            "buckets": counts,
        },
    }


class Spans(HTMLParser):
    """Collects the token spans of a report: attributes and text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.spans: list[dict[str, Any]] = []
        self.tags: set[str] = set()
        self._open: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        attributes = dict(attrs)
        if tag == "span" and "tok" in (attributes.get("class") or "").split():
            self._open = {"attrs": attributes, "text": ""}
            self.spans.append(self._open)

    def handle_endtag(self, tag: str) -> None:
        if tag == "span":
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._open["text"] += data


def parse(page: str) -> Spans:
    parser = Spans()
    parser.feed(page)
    return parser


# -- the page itself ---------------------------------------------------------------------------


def test_buckets_match_the_servers_bucket_counts() -> None:
    """Every rank lands in the bucket scoring.analysis counts it in."""
    from scoring.analysis import bucket_counts

    for rank in (*range(1, 1200), 5_000, 49_151):
        counts = bucket_counts([rank])
        assert counts[bucket_of(rank).key] == 1, rank


def test_bucket_colours_are_gltrs() -> None:
    """Top 10 green, top 100 yellow, top 1000 red, beyond purple."""
    assert [(b.key, b.colour) for b in BUCKETS] == [
        ("top10", "#ADFF80"),
        ("top100", "#FFEA80"),
        ("top1000", "#FF9280"),
        ("beyond", "#E5B0FF"),
    ]


def test_hostile_text_is_escaped_in_text_and_tooltips() -> None:
    """Markup in tokens and alternatives stays text: no script, img or broken attribute."""
    tokens = [
        token("<script>", None),
        token('" onmouseover="alert(1)', 3, top=(("</span><script>", -0.1),)),
        token("<img src=x onerror=alert(1)>", 50),
        token("&amp;", 2_000),
    ]
    page = render_report(analysis(tokens), title="<u>title</u>", source="<i>url</i>")
    parsed = parse(page)

    assert parsed.tags.isdisjoint({"script", "img", "u", "i"})
    assert "<h1>&lt;u&gt;title&lt;/u&gt;</h1>" in page
    assert [s["text"] for s in parsed.spans] == [t["token"] for t in tokens]
    assert all(set(s["attrs"]) <= {"class", "id", "data-rank", "data-tip"} for s in parsed.spans)
    assert '"</span><script>"' in parsed.spans[1]["attrs"]["data-tip"]


def test_page_forbids_scripts_and_loads_nothing() -> None:
    """A CSP with default-src 'none' and no external URL: the file is self-contained."""
    page = render_report(analysis([token("a", None), token("b", 1)]))

    assert "default-src 'none'" in page
    assert "<script" not in page.lower()
    assert "https://" not in page
    assert "src=" not in page


def test_tokens_carry_bucket_class_rank_and_tooltip() -> None:
    """Each scored token has its bucket's class, its rank and its probability with alternatives."""
    tokens = [
        token("The", None),
        token(" cat", 1, -0.2, top=((" cat", -0.2), (" dog", -1.9))),
        token(" sat", 42),
        token(" upon", 420),
        token(" quantum", 4_200),
    ]
    spans = parse(render_report(analysis(tokens))).spans

    assert [s["attrs"]["class"] for s in spans] == [
        "tok first",
        "tok b-top10",
        "tok b-top100",
        "tok b-top1000",
        "tok b-beyond",
    ]
    assert [s["attrs"].get("data-rank") for s in spans] == [None, "1", "42", "420", "4200"]
    assert "first token" in spans[0]["attrs"]["data-tip"]
    tip = spans[1]["attrs"]["data-tip"]
    assert tip.startswith('" cat"  rank 1 (top 10)\np 81.9%')
    assert '" dog"  15.0%' in tip
    assert "<- this token" in tip


def test_histogram_and_perplexity_come_from_the_summary() -> None:
    """The histogram shows the summary's bucket counts and the stats its perplexity."""
    result = analysis([token("a", None), token("b", 1), token("c", 2), token("d", 500)])
    page = render_report(result)

    for key, count in {"top10": 2, "top100": 0, "top1000": 1, "beyond": 0}.items():
        assert f'data-bucket="{key}" data-count="{count}"' in page
    assert f"perplexity <b>{result['summary']['perplexity']:,.2f}</b>" in page


def test_a_single_token_text_has_no_perplexity() -> None:
    """One token, nothing scored: the page says n/a instead of failing."""
    page = render_report(analysis([token("Hi", None)]))

    assert "perplexity <b>n/a (one token)</b>" in page


def test_a_batch_gets_one_section_per_text() -> None:
    """`{"results": [...]}` renders every analysis, numbered, with ids per text."""
    batch = {"results": [analysis([token("a", None), token("b", 7)]) for _ in range(3)]}
    page = render_report(batch)

    assert [f'id="text-{i}"' in page for i in range(3)] == [True] * 3
    assert "<h2>Text 3</h2>" in page
    assert 'id="t2-1"' in page


def test_an_empty_batch_is_refused() -> None:
    """No results means nothing to report: a clear error, not an empty page."""
    with pytest.raises(ValueError, match="no results"):
        render_report({"results": []})


def test_cli_analyze_writes_the_html_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`analyze --html PATH` writes the report next to the usual table output."""
    canned = analysis([token("The", None), token(" fox", 3)])
    monkeypatch.setattr(ScoringClient, "analyze", lambda self, text, top_k=5: canned)
    target = tmp_path / "report.html"

    status = cli.main(["--url", "http://unused/score", "analyze", "The fox", "--html", str(target)])

    assert status == 0
    assert [s["text"] for s in parse(target.read_text(encoding="utf-8")).spans] == ["The", " fox"]
    assert "perplexity" in capsys.readouterr().out


# -- in a real browser, against the real server -----------------------------------------------


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (fds 3 and 4): no
    websocket client, no debugging port."""

    def __init__(self, binary: str, profile: Path, log: Path) -> None:
        to_browser_r, self._out = os.pipe()
        self._in, from_browser_w = os.pipe()

        def wire_pipes() -> None:  # in the child: the fds Chromium's pipe mode reads and writes
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        with log.open("wb") as stderr:
            self.process = subprocess.Popen(
                [
                    binary,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--hide-scrollbars",
                    f"--user-data-dir={profile}",
                    "--remote-debugging-pipe",
                    "about:blank",
                ],
                pass_fds=(3, 4),
                preexec_fn=wire_pipes,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.log = log
        self._buffer = b""
        self._next_id = 0
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]

    def send(self, method: str, params: dict | None = None, *, page: bool = False) -> dict:
        """Send one command (to the page when `page`) and return its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if page:
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page."""
        result = self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, page=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str, timeout_s: float = 20.0) -> None:
        """Navigate and wait for the load to complete."""
        self.send("Page.navigate", {"url": url}, page=True)
        deadline = time.monotonic() + timeout_s
        while self.evaluate("document.readyState") != "complete":
            assert time.monotonic() < deadline, f"{url} did not load in {timeout_s} s"
            time.sleep(0.05)

    def hover(self, selector: str) -> None:
        """Move the mouse onto the first element matching `selector`."""
        box = self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
            ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        self.send(
            "Input.dispatchMouseEvent",
            {"type": "mouseMoved", "x": box[0], "y": box[1]},
            page=True,
        )

    def screenshot(self, width: int, max_height: int = 1400) -> bytes:
        """A PNG of the page at `width` CSS pixels, as tall as its content (capped)."""
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 600, "deviceScaleFactor": 1, "mobile": False},
            page=True,
        )
        height = min(int(self.evaluate("document.documentElement.scrollHeight")), max_height)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            page=True,
        )
        shot = self.send("Page.captureScreenshot", {"format": "png"}, page=True)
        return base64.b64decode(shot["data"])

    def close(self) -> None:
        """Close the browser and its pipes."""
        with suppress(RuntimeError):  # already gone
            self.send("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._out)
        os.close(self._in)

    def _receive(self, timeout_s: float = 30.0) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._in], [], [], timeout_s)
            chunk = os.read(self._in, 1 << 16) if ready else b""
            if not chunk:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"no answer from Chromium within {timeout_s} s:\n{tail}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)


@pytest.fixture(scope="session")
def chromium_binary() -> str:
    """Debian's chromium; installed with apt-get when missing and we are root."""
    found = shutil.which("chromium")
    problem = "not on PATH, and this is not root with apt-get, so it cannot be installed here"
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "chromium"],
        ):
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                problem = f"`{' '.join(command)}` failed: {done.stderr.strip()[-500:]}"
                break
        found = shutil.which("chromium")
    if found is None:
        pytest.skip(f"browser tests need Debian's chromium: {problem}")
    return found


@pytest.fixture
def browser(chromium_binary: str, tmp_path: Path) -> Iterator[Chromium]:
    browser = Chromium(chromium_binary, tmp_path / "profile", tmp_path / "chromium.log")
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="module")
def served(
    demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], Path]:
    """The real server's analysis of TEXTS and the report the CLI wrote from that same answer."""
    report = tmp_path_factory.mktemp("report") / "report.html"
    out = io.StringIO()
    env = {"SCORING_DEVICE": "cpu", "SCORING_ENGINE": "continuous"}  # the report is engine-blind
    with LocalServer(demo_model_dir, env=env) as server, redirect_stdout(out):
        status = cli.main(
            ["--url", server.url + "/score", "--json", "analyze", *TEXTS, "--html", str(report)]
        )
    assert status == 0, out.getvalue()
    return json.loads(out.getvalue()), report


def rgb(hex_colour: str) -> str:
    """A #RRGGBB colour as getComputedStyle reports it."""
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


@pytest.mark.slow
def test_browser_colours_follow_the_servers_ranks(
    served: tuple[dict[str, Any], Path], browser: Chromium
) -> None:
    """Every token renders with its text and the colour of the bucket of the rank it got."""
    response, report = served
    browser.open(report.as_uri())

    rendered = browser.evaluate(
        "[...document.querySelectorAll('section.analysis')].map(s => "
        "[...s.querySelectorAll('.tok')].map(t => [t.textContent, "
        "getComputedStyle(t).backgroundColor]))"
    )
    assert len(rendered) == len(TEXTS) == len(response["results"])
    for text, shown, result in zip(TEXTS, rendered, response["results"], strict=True):
        expected = [
            [t["token"], rgb(bucket_of(t["rank"]).colour) if t["rank"] else "rgba(0, 0, 0, 0)"]
            for t in result["tokens"]
        ]
        assert shown == expected, text
        assert "".join(t for t, _ in shown) == text


@pytest.mark.slow
def test_browser_histogram_matches_the_servers_buckets(
    served: tuple[dict[str, Any], Path], browser: Chromium
) -> None:
    """The histogram bars count what the server's summary counts."""
    response, report = served
    browser.open(report.as_uri())

    bars = browser.evaluate(
        "[...document.querySelectorAll('figure.histogram')].map(f => Object.fromEntries("
        "[...f.querySelectorAll('g.bar')].map(g => [g.dataset.bucket, +g.dataset.count])))"
    )
    assert bars == [r["summary"]["buckets"] for r in response["results"]]


@pytest.mark.slow
def test_browser_shows_hostile_text_as_text(
    served: tuple[dict[str, Any], Path], browser: Chromium
) -> None:
    """The script and image in a text appear as characters; nothing runs or loads."""
    _, report = served
    browser.open(report.as_uri())

    assert browser.evaluate("document.querySelectorAll('script, img').length") == 0
    assert browser.evaluate("typeof window.__byomPwned") == "undefined"
    assert browser.evaluate("document.querySelector('#text-2 .tokens').textContent") == HOSTILE


@pytest.mark.slow
def test_browser_hover_shows_probability_and_alternatives_and_screenshot(
    served: tuple[dict[str, Any], Path], browser: Chromium, tmp_path: Path
) -> None:
    """Hovering a token shows its tooltip; the page screenshots to a PNG for the docs."""
    response, report = served
    browser.open(report.as_uri())
    hidden = browser.evaluate(
        "getComputedStyle(document.querySelector('#t0-6'), '::after').display"
    )

    browser.hover("#t0-6")

    tooltip = browser.evaluate(
        "(() => { const s = getComputedStyle(document.querySelector('#t0-6'), '::after');"
        " return [s.display, s.content]; })()"
    )
    assert hidden == "none"
    assert tooltip[0] == "block"
    assert f"rank {response['results'][0]['tokens'][6]['rank']:,}" in tooltip[1]
    assert "model's top choices" in tooltip[1]

    png = browser.screenshot(width=1100)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    assert width == 1100
    assert height > 300
    (tmp_path / "token-report.png").write_bytes(png)
    if os.environ.get(SCREENSHOT_ENV):
        Path(os.environ[SCREENSHOT_ENV]).write_bytes(png)
