"""The `remediator` command line.

Exit codes: 0 = done; 1 = the cycle could not run (an outside system unreachable after
retries); 2 = bad config or usage (one line naming the key). No tracebacks for either.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from agents.config import ConfigError, Settings, env_log_format, env_log_level, load_settings, local_user
from tools.errors import printable, scrub

if TYPE_CHECKING:
    from memory.store import Store

HELP = """remediator keeps GitOps-managed AI workloads cheap, fair and as declared.

Each cycle it reads the GitOps repo, Prometheus and the Kubernetes audit log, detects cost
anomalies, budget breaches, model drift, fairness violations and out-of-band changes, and
proposes fixes as pull requests that humans approve. It never writes to the cluster.

\b
Start here:
  remediator demo                                  # everything embedded, no outside services
  remediator run-once --config remediator.yaml     # one cycle against your Prometheus + Git
  remediator run-once --config remediator.yaml --dry-run   # show the PRs, push nothing
  remediator daemon --config remediator.yaml       # every scheduler.interval; SIGTERM = finish cycle, exit 0
  remediator incidents list --config remediator.yaml
  remediator decisions approve INCIDENT --config remediator.yaml
  remediator audit verify --config remediator.yaml

Config keys can be overridden by env REMEDIATOR_<SECTION>__<KEY> (e.g. REMEDIATOR_PROMETHEUS__URL).
"""

app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                  pretty_exceptions_enable=False)
incidents_app = typer.Typer(help="Incidents: what was detected and where it stands.", no_args_is_help=True)
decisions_app = typer.Typer(help="Decisions: approve or reject proposed remediations (without Slack).",
                            no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit trail of every decision.", no_args_is_help=True)
def version_string() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"remediator {version('remediator')}"
    except PackageNotFoundError:
        return "remediator (version unknown: not installed as a package)"


def _version(value: bool) -> None:
    if value:
        typer.echo(version_string())
        raise typer.Exit(0)


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="print the version and exit")] = False) -> None:
    """remediator keeps GitOps-managed AI workloads cheap, fair and as declared."""


app.add_typer(incidents_app, name="incidents")
app.add_typer(decisions_app, name="decisions")
app.add_typer(audit_app, name="audit")

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="daemon config YAML (see config/remediator.example.yaml)",
                                         envvar="REMEDIATOR_CONFIG")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document on stdout (logs go to stderr)")]
log = logging.getLogger("remediator")


class Exit(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class SafeLogFilter(logging.Filter):
    """Every log line, ours and every library's (slack_sdk's retries, urllib3, git): credentials
    scrubbed, and in the values a message formats (data, possibly from outside) control characters
    and newlines shown as escapes, so a user name from an audit log cannot forge a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        def clean(a: object) -> object:
            return printable(scrub(a)) if isinstance(a, str) else a

        if isinstance(record.args, Mapping):
            record.args = {k: clean(v) for k, v in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(clean(a) for a in record.args)
        record.msg = scrub(str(record.msg))
        if record.exc_info and not record.exc_text:   # handlers format it after the filters: do it here
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True


def setup_logging(verbose: bool = False) -> None:
    """Logs on stderr: one JSON object per line (with cycle and incident ids when known), or plain
    text on a terminal; ``REMEDIATOR_LOG_FORMAT=json|text`` forces one."""
    from agents.logs import ContextFilter, formatter

    fmt = env_log_format()
    if fmt not in ("auto", "json", "text"):
        raise ConfigError(f"REMEDIATOR_LOG_FORMAT: must be auto, json or text, not {fmt!r}")
    level = logging.DEBUG if verbose else getattr(logging, env_log_level(), logging.INFO)
    logging.basicConfig(level=level, stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, SafeLogFilter) for f in handler.filters):
            handler.addFilter(SafeLogFilter())
            handler.addFilter(ContextFilter())
            handler.setFormatter(formatter(fmt, tty=sys.stderr.isatty()))
    for noisy in ("urllib3", "git", "httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _settings(config: Path) -> Settings:
    return load_settings(config)


def _print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=1, default=str) + "\n")
    sys.stdout.flush()


# ----------------------------------------------------------------------------- cycles

@app.command("run-once")
def run_once(config: ConfigOpt, json_out: JsonOpt = False,
             dry_run: Annotated[bool, typer.Option("--dry-run", help="plan and print PRs (diff + body); push nothing, record no cursor")] = False,
             wait: Annotated[bool, typer.Option("--wait", help="if another process is running a cycle on this "
                                                "store, wait for it instead of exiting 1")] = False,
             verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Run one full cycle now (evaluated at the wall-clock time it starts) and report it."""
    setup_logging(verbose)
    from agents.compose import build_deps, cycle_checkpointer
    from agents.graph import run_cycle

    settings = _settings(config)
    # a dry run shows each PR it would open on stdout (with --json, stdout is the report: on stderr)
    preview = _preview if dry_run and not json_out else None
    deps = build_deps(settings, dry_run=dry_run, on_progress=lambda m: log.info(m), on_preview=preview)
    with cycle_checkpointer(settings, dry_run=dry_run) as cp:
        report = run_cycle(deps, cp, wait=wait)
    if json_out:
        _print_json(report)
    else:
        _print_report(report)


def _preview(text: str) -> None:
    for line in text.splitlines():
        _line(line)
    sys.stdout.flush()


def _print_report(r: dict[str, Any]) -> None:
    from agents.report import report_lines

    typer.echo(f"cycle {r['cycle_id']} at {r['started_at']}")
    for line in report_lines(r):
        _line(line)


@app.command()
def daemon(config: ConfigOpt, verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Run a cycle every scheduler.interval until SIGTERM/SIGINT (the cycle in flight finishes; exit 0)."""
    setup_logging(verbose)
    from agents.daemon import run_daemon

    run_daemon(_settings(config))


@app.command()
def demo(state_dir: Annotated[Path | None, typer.Option("--state-dir", help="where the demo writes (default: $XDG_STATE_HOME/remediator/demo)")] = None,
         cycles: Annotated[int, typer.Option(min=1, max=5, help="cycles to run (the 2nd shows idempotency)")] = 2,
         json_out: JsonOpt = False) -> None:
    """Run the whole loop on embedded data: no outside services needed."""
    setup_logging(False)
    logging.getLogger("remediator").setLevel(logging.WARNING)  # the demo prints its own story
    from agents.demo import run_demo

    run_demo(state_dir, cycles=cycles, json_out=json_out)


# ----------------------------------------------------------------------------- incidents

def _line(text: str) -> None:
    """One line of human output built from data: control characters and newlines shown as escapes
    (a summary or an audit-log user name cannot move the cursor or fake another line)."""
    typer.echo(printable(text))


def _store(config: Path) -> Store:
    """The existing store (read-only commands never create one: a wrong path is exit 2)."""
    from agents.compose import open_existing_store

    return open_existing_store(_settings(config))


@incidents_app.command("list")
def incidents_list(config: ConfigOpt, json_out: JsonOpt = False,
                   all_: Annotated[bool, typer.Option("--all", help="include resolved/closed/rejected")] = False) -> None:
    """List incidents (active ones unless --all)."""
    from memory.records import ACTIVE_STATUSES

    store = _store(config)
    items = store.list_incidents(statuses=None if all_ else ACTIVE_STATUSES)
    if json_out:
        _print_json([i.model_dump(mode="json") for i in items])
        return
    if not items:
        typer.echo("no incidents" + ("" if all_ else " (active); --all shows resolved ones too"))
    for i in items:
        _line(f"{i.id}  {i.status:<9} {i.severity:<8} {i.kind:<18} {i.service:<40} {i.summary[:100]}")


@incidents_app.command("show")
def incidents_show(incident_id: str, config: ConfigOpt, json_out: JsonOpt = False) -> None:
    """Show one incident with its evidence, plans, PRs and decisions (why did the agent do that?)."""
    store = _store(config)
    inc = store.get_incident(incident_id)
    if inc is None:
        raise Exit(2, f"no incident {incident_id!r}; see `remediator incidents list --all`")
    plan = store.latest_plan(inc.id)
    prs = [p for p in store.list_prs() if inc.id in p.incident_ids]
    decisions = store.list_decisions(incident_id=inc.id)
    doc = {"incident": inc.model_dump(mode="json"), "plan": plan.model_dump(mode="json") if plan else None,
           "pull_requests": [p.model_dump(mode="json", exclude={"body"}) for p in prs],
           "decisions": [d.model_dump(mode="json") for d in decisions]}
    if json_out:
        _print_json(doc)
        return
    _line(f"{inc.id} {inc.kind} {inc.service} [{inc.severity}] {inc.status}")
    _line(f"  {inc.summary}")
    _line(f"  opened {inc.opened_at:%Y-%m-%d %H:%M}Z, last seen {inc.last_seen_at:%Y-%m-%d %H:%M}Z, fingerprint {inc.fingerprint}")
    from agents.charts import evidence_lines, text_chart

    _line("  evidence:")
    for text in evidence_lines(inc.evidence, indent="    "):
        _line(text[:400])
    chart = text_chart(inc.evidence)
    if chart:
        _line("  signal:")
        for text in chart:
            _line("    " + text)
    if plan:
        _line(f"  plan {plan.id}: {plan.playbook} by {plan.planner} planner; guard: {plan.guard_verdict} "
              f"{'; '.join(plan.guard_reasons)}")
        _line(f"  why: {plan.rationale}")
        for e in plan.edits:
            _line(f"    {e.file} {e.doc_kind}/{e.doc_name} {'.'.join(map(str, e.path))}: {e.old} -> {e.new}")
    for p in prs:
        _line(f"  PR {p.id} {p.status} {p.branch} {p.url}")
    for d in decisions:
        _line(f"  decision {d.id}: {d.verdict} by {d.actor} via {d.source} at {d.at:%Y-%m-%d %H:%M}Z {d.reason}")


@app.command()
def compliance(config: ConfigOpt, json_out: JsonOpt = False,
               failing: Annotated[bool, typer.Option("--failing", help="only what fails or errs")] = False,
               history: Annotated[int, typer.Option(help="cycles read back to date each status", min=1)] = 200) -> None:
    """The compliance posture per service and policy (pass / fail / error, since when), from the last
    cycles. Policies: the shipped defaults (config/policies/) and the repo's policies/compliance/."""
    from agents.compliance import posture_since

    store = _store(config)
    everything = posture_since(store.list_cycles(limit=history))
    rows = [r for r in everything if r.get("status") != "pass"] if failing else everything
    if json_out:
        _print_json(rows)
        return
    if not everything:
        typer.echo("no compliance posture yet: run a cycle (`remediator run-once`)")
    elif not rows:
        typer.echo(f"every evaluated policy passes ({len(everything)} checks)")
    for r in rows:
        _line(f"{r.get('status', '?'):<6} {str(r.get('service')):<40} {str(r.get('policy')):<26} since "
              f"{str(r.get('since'))[:16]}Z  {r.get('message', '')}")


# ----------------------------------------------------------------------------- decisions

@decisions_app.command("list")
def decisions_list(config: ConfigOpt, json_out: JsonOpt = False) -> None:
    """Pending proposals awaiting a decision, then past decisions."""
    store = _store(config)
    pending = [i for i in store.list_incidents(statuses=["proposed"])]
    past = store.list_decisions()
    if json_out:
        _print_json({"pending": [i.report() for i in pending], "decisions": [d.model_dump(mode="json") for d in past]})
        return
    typer.echo(f"pending: {len(pending)}")
    for i in pending:
        _line(f"  {i.id} {i.kind} {i.service}: {i.summary[:120]}")
    typer.echo(f"decisions: {len(past)}")
    for d in past:
        _line(f"  {d.id} {d.verdict} {d.incident_id} by {d.actor} via {d.source} at {d.at:%Y-%m-%d %H:%M}Z")


@decisions_app.command("show")
def decisions_show(decision_id: str, config: ConfigOpt, json_out: JsonOpt = False) -> None:
    """Show one decision."""
    store = _store(config)
    d = store.get_decision(decision_id)
    if d is None:
        raise Exit(2, f"no decision {decision_id!r}; see `remediator decisions list`")
    if json_out:
        plan = store.get_plan(d.plan_id) if d.plan_id else None
        _print_json({**d.model_dump(mode="json"), "plan": plan.model_dump(mode="json") if plan else None})
    else:
        pr = f"PR {d.pr_id}" if d.pr_id else "no PR"
        _line(f"{d.id} {d.verdict} incident {d.incident_id} ({pr}) by {d.actor} via {d.source} at {d.at}: {d.reason}")
        plan = store.get_plan(d.plan_id) if d.plan_id else None
        if plan is not None:
            _line(f"  plan {plan.id}: {plan.playbook} by the {plan.planner} planner ({plan.planner_reason})")
            _line(f"  why: {plan.rationale}")
            _line(f"  guard: {plan.guard_verdict} {'; '.join(plan.guard_reasons)}")


def _decide(config: Path, incident_id: str, verdict: str, actor: str | None, reason: str, json_out: bool) -> None:
    setup_logging(False)
    from agents.approvals import NothingToDecide, decide
    from agents.compose import build_deps, open_existing_store

    settings = _settings(config)
    deps = build_deps(settings, store=open_existing_store(settings))
    try:
        d = decide(deps, incident_id=incident_id, verdict=verdict, actor=actor or local_user(),
               source="cli", reason=reason)
    except NothingToDecide as e:
        raise Exit(1, str(e)) from None
    if json_out:
        _print_json(d.model_dump(mode="json"))
    else:
        typer.echo(f"{'approved' if d.verdict == 'approve' else 'rejected'} {d.incident_id} ({d.id}) {d.reason}")


@decisions_app.command("approve")
def decisions_approve(incident_id: str, config: ConfigOpt, actor: Annotated[str | None, typer.Option(help="who approves (default $USER)")] = None,
                      reason: str = "", json_out: JsonOpt = False) -> None:
    """Approve the open PR of an incident: merges it on the local provider."""
    _decide(config, incident_id, "approve", actor, reason, json_out)


@decisions_app.command("reject")
def decisions_reject(incident_id: str, config: ConfigOpt, actor: Annotated[str | None, typer.Option(help="who rejects (default $USER)")] = None,
                     reason: str = "", json_out: JsonOpt = False) -> None:
    """Reject the proposal: closes the PR; the same plan is not proposed again within the cooldown."""
    _decide(config, incident_id, "reject", actor, reason, json_out)


# ----------------------------------------------------------------------------- audit

@audit_app.command("verify")
def audit_verify(config: ConfigOpt, json_out: JsonOpt = False,
                 chain_only: Annotated[bool, typer.Option("--chain-only", help="check the hash chain in the store "
                                                          "only, not the anchors in the GitOps remote")] = False) -> None:
    """Recompute the hash chain and check it against every anchor in the GitOps remote; exit 1
    naming the first entry that is broken or disagrees with an anchor."""
    from agents.auditcheck import verify_audit

    settings = _settings(config)
    ok, doc, lines = verify_audit(settings, _store(config), anchors=not chain_only)
    if json_out:
        _print_json(doc)
    else:
        for line in lines:
            typer.echo(line)
    if not ok:
        raise typer.Exit(1)


@audit_app.command("export")
def audit_export(config: ConfigOpt, out: Annotated[Path | None, typer.Option("--out", "-o", help="file to write (default stdout)")] = None) -> None:
    """Write the audit trail as JSON lines."""
    store = _store(config)
    if out is None:
        n = store.audit.export(sys.stdout)
    else:
        with out.open("w") as fp:
            n = store.audit.export(fp)
        typer.echo(f"wrote {n} entries to {out}", err=True)


# ----------------------------------------------------------------------------- NAB

@app.command("nab")
def nab(data: Annotated[Path, typer.Option("--data", help="NAB data folder: <category>/<file>.csv with timestamp,value "
                                                          "(or the NAB root that holds data/)")],
        out: Annotated[Path, typer.Option("--out", help="results folder; files go to OUT/NAME/<category>/NAME_<file>.csv")],
        detector: Annotated[str, typer.Option("--detector", help="production (the daemon's whole deciding cost path, "
                                                                 "replayed), remediator (its torch streaming detector "
                                                                 "alone), seasonal, zscore, iforest, windowedGaussian, "
                                                                 "random or null")] = "remediator",
        json_out: JsonOpt = False) -> None:
    """Score NAB-format series with a detector and write NAB results files.

    \b
    remediator: the torch streaming detector on the code path the daemon uses (every
    score looks only at the past; all series as one batch). production: what decides a
    cost finding in the daemon, replayed: a cycle every 5 minutes of series time runs the
    cost tests and gates on the last 7 days with the streaming alarm up to then; a row
    scores where an incident opens (the streaming model's highest score over the
    finding's window, at least 0.001), else 0, so NAB's threshold sweep chooses how much
    of the model's evidence an opening needs (minutes for NAB's 270k rows on 2 cores).
    Score the results with NAB's rules:
      remediator nab --data ../shared/bench/nab/data --out /tmp/nab --detector production
      python bench/nab_score.py --results /tmp/nab --nab ../shared/bench/nab
    """
    from agents.nab import run_nab

    setup_logging(False)   # the production replay says which series it is on
    try:
        summary = run_nab(data, out, detector)
    except (ValueError, FileNotFoundError) as e:
        raise Exit(2, str(e)) from e
    if json_out:
        _print_json(summary)
    else:
        typer.echo(f"{summary['detector']}: scored {summary['rows']} rows in {summary['files']} files "
                   f"({summary['detect_wall_s']} s); results in {summary['out']}")


@app.command()
def serve(config: ConfigOpt,
          host: Annotated[str | None, typer.Option(help="address to listen on (default http.host, 127.0.0.1; "
                                                       "put a TLS proxy in front for Slack)")] = None,
          port: Annotated[int | None, typer.Option(min=1, max=65535, help="default http.port, 8080")] = None) -> None:
    """HTTP endpoint: the review UI (/ui/), Slack Approve/Reject buttons (POST /slack/interactions, signed),
    /healthz, /metrics."""
    setup_logging(False)
    from agents.http import serve as run_server

    run_server(_settings(config), host=host, port=port)


def main() -> None:
    from memory.errors import StoreBusy, StoreMissing
    from tools.errors import CycleAborted, ToolError, scrub

    try:
        # standalone_mode=False: click hands back a command's exit code (typer.Exit) instead of
        # exiting; it must become the process' exit status (audit verify's 1, for one)
        rc = app(standalone_mode=False)
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except (StoreMissing, ConfigError, Exit, StoreBusy, CycleAborted, ToolError) as e:
        # usage and config (a missing store included): 2; the command ran and could not: 1
        code = getattr(e, "code", 2 if isinstance(e, StoreMissing | ConfigError) else 1)
        what = "cycle could not run: " if isinstance(e, CycleAborted) else ""
        sys.stderr.write(f"remediator: {what}{scrub(str(e))}\n")
        sys.exit(code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.stderr.write("remediator: aborted\n")
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:
        show = getattr(e, "show", None)  # click/typer usage errors know how to print themselves
        if callable(show):
            show()
            sys.exit(int(getattr(e, "exit_code", 2)))
        log.debug("internal error", exc_info=True)
        sys.stderr.write(f"remediator: internal error: {type(e).__name__}: {scrub(str(e))} "
                         "(set REMEDIATOR_LOG_LEVEL=DEBUG for the traceback, and please report it)\n")
        sys.exit(1)


if __name__ == "__main__":
    main()

_ = datetime, UTC
