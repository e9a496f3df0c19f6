"""A self-contained HTML page for a token analysis: GLTR colours, hover details, a histogram.

Each token is coloured by the bucket of its rank (top 10 / 100 / 1000 / beyond, as in GLTR);
hovering it shows its probability and the model's top alternatives. The page loads nothing and
runs nothing: styles are inline, the histogram is inline SVG, tooltips are CSS ``attr()`` text,
and a Content-Security-Policy forbids scripts. Analysed text is untrusted, so every piece of it is
HTML-escaped; ``<script>`` in a text shows as text.

    python -m scoring.cli --url http://127.0.0.1:5001/score analyze "Some text" --html report.html
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scoring.schemas import RANK_BUCKETS

# No script, no network: only inline styles and inline images may load.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
TOOLTIP_ALTERNATIVES = 5


@dataclass(frozen=True)
class Bucket:
    """One GLTR bucket: the ranks it holds and its colour."""

    key: str  # the key in the analysis summary's "buckets"
    label: str
    max_rank: int | None  # highest rank in the bucket; None: no upper bound
    colour: str


# Keys and limits are the scoring contract's (scoring.schemas.RANK_BUCKETS); labels and colours
# are the report's own.
_LOOKS = (
    ("top 10", "#ADFF80"),
    ("top 100", "#FFEA80"),
    ("top 1000", "#FF9280"),
    ("beyond", "#E5B0FF"),
)
BUCKETS = tuple(
    Bucket(key, label, limit, colour)
    for (key, limit), (label, colour) in zip(RANK_BUCKETS, _LOOKS, strict=True)
)

_STYLE = """
:root { color-scheme: light; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f;
       margin: 0 auto; max-width: 72rem; padding: 1.5rem 2rem 4rem; background: #fff; }
h1 { font-size: 1.4rem; margin: 0 0 .25rem; }
h2 { font-size: 1.05rem; margin: 0 0 .5rem; }
.meta { color: #555; margin: 0 0 .75rem; font-size: .9rem; }
.legend { display: flex; flex-wrap: wrap; gap: .4rem 1.2rem; list-style: none; padding: 0;
          margin: 0 0 1.5rem; font-size: .9rem; }
.legend li { display: flex; align-items: center; gap: .4rem; }
.swatch { display: inline-block; width: 1.1rem; height: .9rem; border-radius: 2px;
          border: 1px solid rgba(0,0,0,.15); }
section.analysis { border-top: 1px solid #ddd; padding-top: 1rem; margin-top: 1rem; }
.layout { display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start; }
.tokens { flex: 1 1 32rem; white-space: pre-wrap; overflow-wrap: anywhere; line-height: 1.9;
          font: 15px/1.9 ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
.side { flex: 0 0 20rem; }
.stats { margin: 0 0 .75rem; padding: 0; list-style: none; font-size: .9rem; }
.stats b { font-variant-numeric: tabular-nums; }
.tok { position: relative; border-radius: 2px; cursor: default; }
.tok.first { outline: 1px dashed #999; outline-offset: -1px; }
.tok.nl::before { content: "\\21B5"; color: #777; }
.tok::after { content: attr(data-tip); display: none; position: absolute; left: 0; top: 1.7em;
              z-index: 10; white-space: pre; width: max-content; max-width: 36rem;
              padding: .45rem .6rem; border-radius: 4px; background: #222; color: #f5f5f5;
              font: 12px/1.45 ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
              box-shadow: 0 2px 8px rgba(0,0,0,.3); pointer-events: none; }
.tok:hover::after, .tok:target::after { display: block; }
.tok:hover, .tok:target { outline: 2px solid #222; outline-offset: 0; }
figure { margin: 0; }
figcaption { font-size: .85rem; color: #555; margin-bottom: .25rem; }
svg text { font: 12px system-ui, sans-serif; fill: #1d1d1f; }
"""


def bucket_of(rank: int | None) -> Bucket | None:
    """The bucket a rank falls in; None for the first token, which has no prediction."""
    if rank is None:
        return None
    for bucket in BUCKETS:
        if bucket.max_rank is None or rank <= bucket.max_rank:
            return bucket
    raise AssertionError("the last bucket is unbounded")


def render_report(
    analysis: Mapping[str, Any],
    *,
    title: str = "Token analysis",
    source: str | None = None,
) -> str:
    """The HTML page for one analysis or a batch (``{"results": [...]}``); ``source`` names the
    model or endpoint that scored it."""
    analyses: Sequence[Mapping[str, Any]] = analysis.get("results", [analysis])
    if not analyses:
        raise ValueError("the analysis has no results to report")
    meta = f"{len(analyses)} text{'s' if len(analyses) != 1 else ''}"
    if source:
        meta += f" scored by {source}"
    sections = "\n".join(_section(i, a, len(analyses) > 1) for i, a in enumerate(analyses))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title>\n<style>{_STYLE}{_bucket_rules()}</style>\n"
        "</head>\n<body>\n"
        f"<header>\n<h1>{_esc(title)}</h1>\n"
        f'<p class="meta">{_esc(meta)}. Colour: the rank the model gave each token '
        "(1 = its first choice). Hover a token for its probability and the model's top "
        "alternatives.</p>\n"
        f"{_legend()}\n</header>\n{sections}\n</body>\n</html>\n"
    )


def write_report(path: str | Path, analysis: Mapping[str, Any], **options: Any) -> Path:
    """Render the report and write it (UTF-8); return the path."""
    target = Path(path)
    target.write_text(render_report(analysis, **options), encoding="utf-8")
    return target


def _section(index: int, analysis: Mapping[str, Any], numbered: bool) -> str:
    summary = analysis["summary"]
    tokens = "".join(_token(index, i, t) for i, t in enumerate(analysis["tokens"]))
    heading = f"Text {index + 1}" if numbered else "Text"
    return (
        f'<section class="analysis" id="text-{index}" data-index="{index}">\n'
        f"<h2>{heading}</h2>\n"
        f'<div class="layout">\n<div class="tokens">{tokens}</div>\n'
        f'<div class="side">\n{_stats(summary)}\n{_histogram(index, summary)}\n</div>\n'
        "</div>\n</section>"
    )


def _token(text_index: int, position: int, token: Mapping[str, Any]) -> str:
    bucket = bucket_of(token["rank"])
    classes = ["tok", f"b-{bucket.key}" if bucket else "first"]
    if "\n" in token["token"]:
        classes.append("nl")  # a visible mark: a coloured newline alone shows nothing
    rank = "" if token["rank"] is None else f' data-rank="{int(token["rank"])}"'
    return (
        f'<span class="{" ".join(classes)}" id="t{text_index}-{position}"{rank} '
        f'data-tip="{_esc(_tooltip(token, bucket))}">{_esc(token["token"])}</span>'
    )


def _tooltip(token: Mapping[str, Any], bucket: Bucket | None) -> str:
    shown = _quoted(token["token"])
    if bucket is None:
        return f"{shown}\nfirst token: nothing before it to predict it"
    lines = [
        f"{shown}  rank {token['rank']:,} ({bucket.label})",
        f"p {_percent(token['logprob'])}  log p {token['logprob']:.2f}",
    ]
    alternatives = token.get("top") or []
    if alternatives:
        lines.append("model's top choices:")
        width = max(len(_quoted(a["token"])) for a in alternatives[:TOOLTIP_ALTERNATIVES])
        for alt in alternatives[:TOOLTIP_ALTERNATIVES]:
            mark = "  <- this token" if alt.get("id") == token.get("id") else ""
            lines.append(
                f"  {_quoted(alt['token']).ljust(width)}  {_percent(alt['logprob'])}{mark}"
            )
    return "\n".join(lines)


def _stats(summary: Mapping[str, Any]) -> str:
    perplexity = summary.get("perplexity")
    mean = summary.get("mean_logprob")
    rows = [
        ("perplexity", "n/a (one token)" if perplexity is None else f"{perplexity:,.2f}"),
        ("mean log p", "n/a" if mean is None else f"{mean:.3f}"),
        ("tokens", f"{summary['num_tokens']:,} ({summary['scored_tokens']:,} scored)"),
    ]
    items = "".join(
        f'<li data-stat="{key.replace(" ", "-")}">{key} <b>{_esc(value)}</b></li>'
        for key, value in rows
    )
    return f'<ul class="stats">{items}</ul>'


def _histogram(index: int, summary: Mapping[str, Any]) -> str:
    counts = summary["buckets"]
    total = sum(counts[b.key] for b in BUCKETS)
    row_h, bar_x, bar_w, width = 26, 70, 150, 320
    height = row_h * len(BUCKETS) + 4
    rows = []
    for i, bucket in enumerate(BUCKETS):
        count = counts[bucket.key]
        share = count / total if total else 0.0
        y = 2 + i * row_h
        rows.append(
            f'<g class="bar" data-bucket="{bucket.key}" data-count="{count}">'
            f"<title>{bucket.label}: {count} of {total} scored tokens</title>"
            f'<text x="0" y="{y + 16}">{bucket.label}</text>'
            f'<rect x="{bar_x}" y="{y + 3}" width="{bar_w}" height="18" fill="#f2f2f2"/>'
            f'<rect x="{bar_x}" y="{y + 3}" width="{share * bar_w:.1f}" height="18" '
            f'fill="{bucket.colour}" stroke="rgba(0,0,0,.25)"/>'
            f'<text x="{bar_x + bar_w + 8}" y="{y + 16}">{count} ({share:.0%})</text></g>'
        )
    return (
        f'<figure class="histogram" id="histogram-{index}">'
        "<figcaption>Ranks of the scored tokens</figcaption>"
        f'<svg role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="rank histogram">{"".join(rows)}</svg>'
        "</figure>"
    )


def _legend() -> str:
    items = "".join(
        f'<li><span class="swatch" style="background:{b.colour}"></span>{b.label}</li>'
        for b in BUCKETS
    )
    first = '<li><span class="swatch" style="outline:1px dashed #999"></span>first token</li>'
    return f'<ul class="legend">{items}{first}</ul>'


def _bucket_rules() -> str:
    return "".join(f".b-{b.key} {{ background: {b.colour}; }}\n" for b in BUCKETS)


def _percent(logprob: float) -> str:
    p = math.exp(logprob) * 100
    if p >= 1:
        return f"{p:.1f}%"
    return f"{p:.2g}%" if p >= 0.001 else f"{p:.1e}%"


def _quoted(token: str) -> str:
    # JSON quoting shows leading spaces, newlines and tabs that a tooltip would swallow.
    return json.dumps(token, ensure_ascii=False)


def _esc(text: str) -> str:
    return html.escape(str(text), quote=True)


__all__ = ["BUCKETS", "Bucket", "bucket_of", "render_report", "write_report"]
