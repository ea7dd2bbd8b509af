"""The static HTML report of an experiment: one self-contained file that opens from disk.

It shows the agreement curve along the experiment's lineage (every split its
``results.json`` carries: cross-validated, in-sample, held-out, test), the confusion
table, a card per proposal (condition, evidence sessions, the reviewers' own words,
leave-one-out or per-fold effect, the regressions among the sessions it matches) with a
picture of the context graph around its precedent, the regression list, and, once
``improver precedents`` has tracked them, the precedents over time with a sparkline
of overrides per week each. Charts are
matplotlib SVG pasted into the page; there is no script and nothing is fetched at view
time. Every report leaves the store through ``release`` (the one place to scan it).
"""
from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from pathlib import Path
from string import Template

import numpy as np

from improver.errors import ExperimentError
from improver.experiments import Experiment, Proposal
from improver.graphs import session_facts
from improver.models import ReviewedSession
from improver.workspace import Workspace

HERE = Path(__file__).resolve().parent
KNOWN_SPLITS = ("cv", "heldout", "test", "train", "all")  # the order they are drawn and listed in
HEADLINE = ("cv", "heldout", "test", "all")  # the first present is the figure a report leads with
MAX_EVIDENCE_LISTED = 30
MAX_QUOTES = 4
MAX_GRAPH_SESSIONS = 5
MAX_REGRESSIONS_LISTED = 200


def release(ws: Workspace, text: str, destination: str) -> str:
    """The one place a report's text passes before it leaves the store (a file, a PR branch): the
    project's leak scan, which refuses text that still holds personal data or secrets."""
    ws.leak_scan.check(text, f"the report ({destination})")
    return text


# --- what the report reads -------------------------------------------------------
def default_experiment(ws: Workspace) -> Experiment:
    """The newest accepted or merged experiment, else the scored one with the best headline agreement."""
    experiments = [e for e in ws.experiments.all() if e.results]
    if not experiments:
        raise ExperimentError("no scored experiment yet: run `improver cycle` (or `improver demo`) first")
    shipped = [e for e in experiments if e.status in ("accepted", "merged")]
    if shipped:
        return shipped[-1]
    return max(reversed(experiments), key=lambda e: (headline(e.results)[1] or 0))


def lineage(ws: Workspace, experiment: Experiment) -> list[Experiment]:
    """The experiment and its ancestors, root first."""
    chain = [experiment]
    known = set(ws.experiments.ids())
    while chain[-1].manifest.parent in known and len(chain) < 1000:
        chain.append(ws.experiments.get(chain[-1].manifest.parent))
    return chain[::-1]


def splits_of(results: dict) -> list[str]:
    """The splits a results.json scores, known ones first: keys whose value holds an ``agreement``."""
    present = [k for k, v in results.items() if isinstance(v, dict) and isinstance(v.get("agreement"), (int, float))]
    return [k for k in KNOWN_SPLITS if k in present] + sorted(k for k in present if k not in KNOWN_SPLITS)


def has_test_split(results: dict) -> bool:
    """True when the results score a locked test split (``heldout`` with sessions)."""
    return bool((results.get("heldout") or {}).get("sessions")) if isinstance(results.get("heldout"), dict) else False


def headline(results: dict) -> tuple[str, float | None]:
    for split in HEADLINE:
        value = (results.get(split) or {}).get("agreement") if isinstance(results.get(split), dict) else None
        if value is not None:
            return split, value
    return "all", None


# --- HTML pieces -----------------------------------------------------------------
def e(value) -> str:
    return html.escape(str(value), quote=True)


def pct(value) -> str:
    return "–" if value is None else f"{value:.1%}"


def split_name(split: str) -> str:
    from improver.report.charts import SPLIT_STYLE

    return SPLIT_STYLE.get(split, (split,))[0]


def curve_section(chain: list[Experiment]) -> str:
    from improver.report.charts import agreement_curve

    splits: list[str] = []
    for experiment in chain:
        splits += [s for s in splits_of(experiment.results or {}) if s not in splits]
    splits = [s for s in KNOWN_SPLITS if s in splits] + [s for s in splits if s not in KNOWN_SPLITS]
    points = []
    for experiment in chain:
        results = experiment.results or {}
        kind = experiment.manifest.kind
        label = "baseline" if experiment.manifest.parent is None else f"cycle {experiment.manifest.cycle}" + (
            "" if kind == "cycle" else f"\n({kind})")
        points.append({"label": label, **{
            s: results[s]["agreement"] for s in splits if isinstance(results.get(s), dict) and results[s].get("agreement") is not None}})
    rows = "".join(
        f"<tr><td><code>{e(x.id)}</code></td><td>{e(x.manifest.kind)}</td>"
        + "".join(f"<td class=num>{pct(p.get(s))}</td>" for s in splits)
        + f"<td class=num>{len((x.results or {}).get('regressions', []))}</td></tr>"
        for x, p in zip(chain, points))
    head = "".join(f"<th>{e(split_name(s))}</th>" for s in splits)
    return (f'<section id=curve><h2>Agreement, cycle by cycle</h2><figure class=chart data-chart=curve>'
            f'{agreement_curve(points, splits)}<figcaption>Agreement with the human reviewers along the lineage of '
            f'<code>{e(chain[-1].id)}</code>. Cross-validated: each fold scored by rules mined without it; held-out: '
            f'the locked test split, never mined.</figcaption>'
            f'</figure><table><tr><th>experiment</th><th>kind</th>{head}<th>regressions</th></tr>{rows}</table></section>')


def confusion_section(results: dict) -> str:
    rows = results.get("confusion", [])
    labels = sorted({r["agent"] for r in rows} | {r["human"] for r in rows})
    cells = {(r["agent"], r["human"]): r for r in rows}
    has_parent = any(r.get("parent_count") is not None for r in rows)
    out = ["<section id=confusion><h2>Agent decision × human decision</h2><table class=confusion>",
           "<tr><th>agent ↓ / human →</th>" + "".join(f"<th>{e(h)}</th>" for h in labels) + "</tr>"]
    for a in labels:
        out.append(f"<tr><th>{e(a)}</th>")
        for h in labels:
            cell = cells.get((a, h))
            now = cell["count"] if cell else 0
            was = f' <span class=was>(was {cell["parent_count"]})</span>' if cell and has_parent else ""
            out.append(f'<td class="num {"agree" if a == h else "disagree" if now else ""}">{now}{was}</td>')
        out.append("</tr>")
    note = f" Figures in brackets: the parent <code>{e(results.get('parent'))}</code>." if has_parent else ""
    out.append(f"</table><p class=note>All reviewed sessions; the diagonal is agreement.{note}</p></section>")
    return "".join(out)


def effect_text(effect: dict | None, test_split: bool) -> str:
    """The measured effect of a proposal in agreements: out-of-fold (per fold) and leave-one-out."""
    if not effect:
        return "not measured"
    number = (int, float)
    parts = []
    if isinstance(effect.get("cv"), number):
        folds = effect.get("folds")
        per_fold = (" (per fold " + ", ".join(f"{f:+g}" if isinstance(f, number) else e(f) for f in folds) + ")"
                    if isinstance(folds, list) and folds else "")
        parts.append(f"out-of-fold {effect['cv']:+g}{per_fold}")
    if isinstance(effect.get("train"), number):
        parts.append(f"leave-one-out in-sample {effect['train']:+g}")
    if test_split and isinstance(effect.get("heldout"), number):
        parts.append(f"leave-one-out on the test split {effect['heldout']:+g}")
    known = {"cv", "folds", "train", "heldout", "sessions_matched"}
    parts += [f"{e(k.replace('_', ' '))} {v:+g}" for k, v in effect.items()
              if k not in known and isinstance(v, number) and not isinstance(v, bool)]
    text = "; ".join(parts) or "not measured"
    if isinstance(effect.get("sessions_matched"), number):
        text += f" agreements; {effect['sessions_matched']} sessions match"
    return text


def graph_picture(proposal: Proposal, sessions: dict[str, ReviewedSession], ws: Workspace) -> str:
    """The context graph around a proposal's precedent: its evidence sessions, their decisions and entities."""
    from improver.report.charts import context_graph

    config = ws.project.config
    center = f"precedent:{proposal.precedent}"
    nodes = {center: {"label": "Precedent", "text": proposal.precedent[:28]}}
    edges: list[tuple[str, str, str]] = []
    for session_id in proposal.evidence_sessions[:MAX_GRAPH_SESSIONS]:
        s = sessions.get(session_id)
        if s is None:
            continue
        session, decision, review = f"session:{s.session_id}", f"decision:{s.session_id}", f"review:{s.session_id}"
        nodes[session] = {"label": "Session", "text": s.session_id}
        nodes[decision] = {"label": "Decision", "text": f"agent: {s.agent_decision}"}
        nodes[review] = {"label": "Review", "text": f"human: {s.human_decision}"}
        edges += [(session, decision, "DECIDED"), (session, review, "REVIEWED"), (review, center, "CITES_PRECEDENT")]
        if s.agent_decision != s.human_decision:
            edges.append((review, decision, "OVERRIDES"))
        facts = session_facts(s, config.entity_fields, config.bands)
        for field, value in facts["entities"]:
            nodes.setdefault(f"entity:{field}:{value}", {"label": "Entity", "text": f"{field}: {value}"[:30]})
            edges.append((session, f"entity:{field}:{value}", "INVOLVES"))
        for field, band in facts["bands"]:
            nodes.setdefault(f"band:{field}:{band}", {"label": "Band", "text": f"{field} {band}"})
            edges.append((session, f"band:{field}:{band}", "IN_BAND"))
    shown = sum(1 for n in nodes.values() if n["label"] == "Session")
    return (f'<figure class="chart graph" data-chart=graph>{context_graph(nodes, edges, center)}<figcaption>'
            f'Context graph of <code>{e(proposal.precedent)}</code>: {shown} of {len(proposal.evidence_sessions)} '
            f'evidence sessions, their decisions, reviews, entities and bands.</figcaption></figure>')


def graph_key() -> str:
    from improver.report.charts import graph_key as key

    return ("<p class=key>Graph key: " + " ".join(f'<span><i style="background:{colour}"></i>{e(label)}</span>'
                                                 for label, colour in key()) + "</p>")


def card(proposal: Proposal, experiment: Experiment, sessions: dict[str, ReviewedSession], matched: set[str],
         ws: Workspace) -> str:
    results = experiment.results or {}
    effect = (results.get("per_proposal") or {}).get(proposal.id)
    regressions = [r for r in results.get("regressions", []) if r["session_id"] in matched]
    evidence = proposal.evidence_sessions
    listed = ", ".join(f"<code>{e(s)}</code>" for s in evidence[:MAX_EVIDENCE_LISTED])
    if len(evidence) > MAX_EVIDENCE_LISTED:
        listed += f" and {len(evidence) - MAX_EVIDENCE_LISTED} more"
    quotes = []
    for session_id in evidence:
        s = sessions.get(session_id)
        if s is not None and s.human_reasoning.strip():
            quotes.append(f"<blockquote>{e(s.human_reasoning.strip())}<footer>— {e(s.reviewer)}, session "
                          f"<code>{e(session_id)}</code> (agent: {e(s.agent_decision)}, human: {e(s.human_decision)})"
                          f"</footer></blockquote>")
        if len(quotes) == MAX_QUOTES:
            break
    quotes = quotes or [f"<blockquote>{e(q)}</blockquote>" for q in proposal.quotes[:MAX_QUOTES]] or ["<p>(none recorded)</p>"]
    regressed = ("None among the sessions it matches." if not regressions else
                 ", ".join(f"<code>{e(r['session_id'])}</code> ({e(r['split'])}: human {e(r['human'])}, "
                           f"was {e(r['before'])}, now {e(r['now'])})" for r in regressions[:20])
                 + (f" and {len(regressions) - 20} more" if len(regressions) > 20 else ""))
    conflicts = ", ".join(f"<code>{e(c)}</code>" for c in proposal.conflicts[:10]) or "none"
    return (f'<article class=card id="p-{e(proposal.id)}"><h3><code>{e(proposal.id)}</code> → '
            f'<span class=decision>{e(proposal.decision)}</span></h3>'
            f'<p class=condition>when <code>{e(proposal.condition)}</code></p><div class=cols><div><dl>'
            f'<dt>experiment</dt><dd><code>{e(experiment.id)}</code> (cycle {experiment.manifest.cycle})</dd>'
            f'<dt>precedent</dt><dd><code>{e(proposal.precedent)}</code> from {e(proposal.source)}</dd>'
            f'<dt>evidence</dt><dd>{proposal.support} sessions, precision {proposal.precision:.0%} over all reviewed '
            f'matches; conflicts: {conflicts}</dd><dt>evidence sessions</dt><dd>{listed or "none"}</dd>'
            f'<dt>measured effect</dt><dd>{effect_text(effect, has_test_split(results))}</dd>'
            f'<dt>regressions</dt><dd>{regressed}</dd></dl><h4>Reviewers\' own words</h4>{"".join(quotes)}</div>'
            f'<div>{graph_picture(proposal, sessions, ws)}</div></div></article>')


def regressions_section(results: dict) -> str:
    regressions = results.get("regressions")
    if regressions is None:
        return ""
    if not regressions:
        return ("<section id=regressions><h2>Regressions</h2><p>None: every session that agreed with the reviewer "
                "under the parent still agrees.</p></section>")
    rows = "".join(f"<tr><td><code>{e(r['session_id'])}</code></td><td>{e(r['split'])}</td><td>{e(r['human'])}</td>"
                   f"<td>{e(r['before'])}</td><td>{e(r['now'])}</td></tr>" for r in regressions[:MAX_REGRESSIONS_LISTED])
    more = (f"<p class=note>and {len(regressions) - MAX_REGRESSIONS_LISTED} more (see results.json)</p>"
            if len(regressions) > MAX_REGRESSIONS_LISTED else "")
    return (f"<section id=regressions><h2>Regressions ({len(regressions)})</h2><p>Sessions that agreed with the reviewer "
            f"under <code>{e(results.get('parent'))}</code> and disagree now.</p><table><tr><th>session</th><th>split</th>"
            f"<th>human</th><th>before</th><th>now</th></tr>{rows}</table>{more}</section>")


# --- the page --------------------------------------------------------------------
def precedents_section(ws: Workspace) -> str:
    """Precedents over time (``improver precedents``), a sparkline of overrides per week each; empty until tracked."""
    from improver.precedents import REGISTRY
    from improver.report.charts import sparkline

    path = ws.project.data_dir / REGISTRY
    if not path.exists():
        return ""
    registry = json.loads(path.read_text(encoding="utf-8"))
    weeks = sorted({w for p in registry["precedents"] for w in p.get("weekly", {})})
    rows = "".join(
        f"<tr><td><code>{e(p['id'])}</code></td><td>{e(p['name'])}</td><td>{e(p['decision'])}</td>"
        f"<td><span class=status>{e(p['status'])}</span></td>"
        f"<td>{sparkline([p.get('weekly', {}).get(w, 0) for w in weeks])}</td>"
        f"<td class=num>{p['history'][-1]['overrides'] if p.get('history') else ''}</td><td>{e(p.get('description', ''))}</td></tr>"
        for p in registry["precedents"])
    span = f"{weeks[0]} to {weeks[-1]}" if weeks else "no dated reviews"
    return (f"<section id=precedents><h2>Precedents over time ({len(registry['precedents'])})</h2>"
            f"<table><tr><th>id</th><th>precedent</th><th>decision</th><th>status</th><th>overrides per week "
            f"({e(span)})</th><th>overrides</th><th>condition</th></tr>{rows}</table>"
            f"<p class=note>Tracked by <code>improver precedents</code>: each keeps its id across mining runs; "
            f"handled = the accepted experiment ships a rule for it.</p></section>")


def render(ws: Workspace, experiment_id: str | None = None) -> str:
    """The report of an experiment (default: ``default_experiment``) as one HTML document."""
    experiment = ws.experiments.get(experiment_id) if experiment_id else default_experiment(ws)
    results = ws.score(experiment)
    chain = lineage(ws, experiment)
    for ancestor in chain:
        ws.score(ancestor)
    sessions = {s.session_id: s for s in ws.sessions}
    index = {s.session_id: i for i, s in enumerate(ws.sessions)}
    ids = np.array([s.session_id for s in ws.sessions], dtype=object)
    cards = []
    for ancestor in reversed(chain):
        for proposal in ancestor.manifest.proposals:
            matched = set(ids[ws.columns.mask(proposal.when)]) if index else set()
            cards.append(card(proposal, ancestor, sessions, matched, ws))
    split, value = headline(results)
    scored = results.get(split) if isinstance(results.get(split), dict) else {}
    change = scored.get("change") if "change" in scored else (results.get("change") or {}).get(split)
    interval = (f" (95% interval {pct(scored['low'])}–{pct(scored['high'])})"
                if isinstance(scored.get("low"), float) and isinstance(scored.get("high"), float) else "")
    label = "in-sample" if scored.get("mode") == "in-sample" else split_name(split)
    summary = (f"{pct(value)} {e(label)} agreement{interval}"
               + (f" ({change * 100:+.1f} pts against <code>{e(results.get('parent'))}</code>)" if change is not None else "")
               + f" over {(results.get('all') or {}).get('sessions', len(sessions))} reviewed sessions; "
               f"{len(results.get('regressions', []))} regressions, {results.get('errors', {}).get('count', 0)} errors.")
    body = "".join([
        curve_section(chain), confusion_section(results),
        f"<section id=proposals><h2>Proposals ({len(cards)})</h2>{graph_key() if cards else ''}"
        + ("".join(cards) or "<p>This lineage has no proposals yet.</p>") + "</section>",
        regressions_section(results), precedents_section(ws)])
    page = Template((HERE / "template.html").read_text(encoding="utf-8")).substitute(
        title=e(f"improver report: {experiment.id}"), style=(HERE / "style.css").read_text(encoding="utf-8"),
        experiment=e(experiment.id), project=e(ws.project.root.name), summary=summary, body=body,
        status=e(experiment.status), generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        reproduce=e(f"improver report {experiment.id}"))
    return page


def write_report(ws: Workspace, experiment_id: str | None = None, path: Path | None = None) -> Path:
    """Write the report to ``path`` (default ``reports/<experiment>.html`` in the project) and return it."""
    experiment = ws.experiments.get(experiment_id) if experiment_id else default_experiment(ws)
    path = path or ws.project.root / "reports" / f"{experiment.id}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = release(ws, render(ws, experiment.id), str(path))
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
    return path
