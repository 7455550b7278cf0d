"""Optimal EMA (η, β) to long horizons, next to optimal SGD and the momentum families.

    python benchmarks/bench_momentum_long.py                        # both settings, every case
    python benchmarks/bench_momentum_long.py --setting project --case hard --max-T 31623
    python benchmarks/bench_momentum_long.py --report-only          # tables from what is solved
    python benchmarks/bench_momentum_long.py --K 48                 # the same on 48 blocks (the earlier default)

The (η, β) study of docs/controls.md (``optctl.studies.momentum``, the converged solver, each start
followed by the search over the anneal's block (``optctl.solver.continuation.solve_escape``):
refined grid K = 96 (``--K``; the study file's 48 leaves local optima whose starts differ by
up to 2e-3 at T ≥ 3162, docs/controls.md), block propagator, grouped modes) on the models of the families study
(``optctl/data/study_families.yaml``: hard a = 1.3, b = 2.75; hard_b2 a = 1.5, b = 2; easy
a = 2.3, b = 1.75) at the families' horizons 10^2 … 10^5, in two settings: ``project`` (raw initial loss, κ = 0, velocity
start v_0 = β_0 g_0) and ``notebook`` (normalised initial loss, κ = 1e-2 — the notebook's
per-step penalty, on the block grid each change spread between block midpoints
(``optctl.solver.controls.penalty_weights``) — the notebook's velocity start). One command
per setting: ``--setting notebook`` (or ``project``) runs every case to 10^5. Each horizon starts from the previous one's optimum (horizon continuation);
up to ``--second-start-max-T`` it is also solved from the default candidates and the two are
compared (the lower is kept; a difference above 1e-4 is flagged in the tables).

Writes results/momentum_long_K96/<setting>/ (points/*.json, summary.json, report.md, figures,
runs.json: each run's command, wall time, load averages and which points it solved or found solved;
results/momentum_long_K<K>/ for another ``--K``, results/momentum_long/ for K = 48) and
results/momentum_families/exponents.md (exponents_K<K>.md for another K): every method's L_T,
local slopes, theory lines and the verdict, with the solver's flags. Resumable: solved points
are kept (one folder per K, so points of two grids never mix).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from optctl.io.files import write_json, write_text_atomic
from optctl.io.studyconfig import load_control_study
from optctl.studies.families import dana_exponent, load_study
from optctl.studies.family_schedules import scheduled_section
from optctl.studies.momentum import (
    STARTS_RTOL,
    add_start,
    load_points,
    restart_capped,
    run_momentum_study,
)

LONG = (100, 316, 1000, 3162, 10_000, 31_623, 100_000)
FAMILIES = ("dana-decaying", "dana-constant", "log-time", "schedule-free")
STARTS = ("continuation", "default", "from above")  # the (η, β) starts a point can record


def horizons_of(case: str, max_T: int) -> tuple[int, ...]:
    return tuple(T for T in LONG if T <= max_T)


def slopes(T: list[int], L: list[float]) -> list[float]:
    lt, ll = np.log(np.asarray(T, float)), np.log(np.asarray(L, float))
    return (-np.diff(ll) / np.diff(lt)).tolist()


def _flag(rec: dict[str, Any]) -> str:
    out = []
    if rec["momentum_status"] != "Solve_Succeeded":
        out.append(rec["momentum_status"])
    sp = rec.get("starts_spread")
    if sp is not None and sp > STARTS_RTOL:
        out.append(f"starts differ {sp:.1e}")
    return f" [{'; '.join(out)}]" if out else ""


DEFAULT_K = 96


def long_out_of(K: int) -> Path:
    """The folder of the (η, β) points on ``K`` refined blocks."""
    return Path("results/momentum_long" if K == 48 else f"results/momentum_long_K{K}")


def exponent_report(long_out: Path, families_out: Path, K: int = DEFAULT_K) -> str:
    """Markdown: every method per case and horizon (project setting), slopes, theory, verdict."""
    fam_cfg = load_study()
    points = load_points(long_out / "project")
    lines = ["# Loss exponents of every method, optimal EMA (η, β) included", "",
             "Exact expected final losses L_T (per-step replays / recursions, all modes) on the models "
             "of `optctl/data/study_families.yaml`, not normalised (the project setting). Optimal SGD "
             "and optimal (η, β): IPOPT, `η ≤ 1`, `β ∈ [0, 1]`; the families tuned per horizon "
             "(docs/momentum_families.md). Written by `python benchmarks/bench_momentum_long.py` "
             f"(the (η, β) column; {long_out.as_posix()}/project/) from "
             "`python benchmarks/bench_momentum_families.py` (the other columns). Brackets: a solve "
             "that did not end in IPOPT success, or two starts that differ by more than 1e-4; [edge]: a "
             "family's tuned hyperparameters on the edge of their search box. "
             "Optimal SGD is solved on its default grid (per step to T = 500, then 100 refined "
             f"blocks), (η, β) on {K} refined blocks; \"vs SGD on its grid\" compares with the "
             f"learning-rate optimum on those {K} blocks, the start of the (η, β) solve.", ""]
    for case, model in fam_cfg["models"].items():
        path = families_out / f"{case}.json"
        if not path.exists():
            continue
        fam_rows = {int(r["T"]): r for r in json.loads(path.read_text())["rows"]}
        ema = {int(r["T"]): r for r in points.get(case, [])}
        Ts = [T for T in sorted(fam_rows) if T in ema]
        a, b = float(model["a"]), float(model["b"])
        lines += [f"## {case} (a = {a:g}, b = {b:g}, N = {int(model['N'])}, σ = {model['sigma']:g}, "
                  f"m = {model['batch_size']:g})", ""]
        if not Ts:
            lines += ["(η, β) not solved yet for this case.", ""]
            continue
        missing = [T for T in sorted(fam_rows) if T not in ema]
        head = "| T | optimal SGD | optimal (η, β) | " + " | ".join(FAMILIES) + " |"
        lines += [head, "|---" * (3 + len(FAMILIES)) + "|"]
        cols: dict[str, list[float]] = {"sgd": [], "ema": [], **{f: [] for f in FAMILIES}}
        for T in Ts:
            r, e = fam_rows[T], ema[T]
            sgd = float(r["sgd"]["loss"])
            same = e.get("momentum_transcription", {}).get("sgd_final_loss")
            grid = "" if same is None else f"; {100 * (e['momentum_loss'] / same - 1):+.2f}% vs SGD on its grid"
            cells = [f"{sgd:.5g}", f"{e['momentum_loss']:.5g} ({100 * (e['momentum_loss'] / sgd - 1):+.2f}%{grid})"
                     + _flag(e)]
            cols["sgd"].append(sgd)
            cols["ema"].append(float(e["momentum_loss"]))
            for f in FAMILIES:
                v = float(r[f]["loss"])
                cols[f].append(v)
                edge = " [edge]" if r[f].get("on_edge") else ""  # tuned optimum on its search box's edge
                cells.append(f"{v:.5g} ({100 * (v / sgd - 1):+.1f}%){edge}")
            lines.append(f"| {T} | " + " | ".join(cells) + " |")
        lines += ["", "Local slopes −Δ log L_T / Δ log T:", "",
                  "| T range | optimal SGD | optimal (η, β) | " + " | ".join(FAMILIES) + " |",
                  "|---" * (3 + len(FAMILIES)) + "|"]
        sl = {k: slopes(Ts, v) for k, v in cols.items()}
        for i in range(len(Ts) - 1):
            lines.append(f"| {Ts[i]}→{Ts[i + 1]} | " + " | ".join(f"{sl[k][i]:.4f}" for k in cols) + " |")
        lines += ["", f"Theory: optimal SGD ζ = min((a−1)/a, (a−1)/b) = {min((a - 1) / a, (a - 1) / b):.4f}; "
                  f"the notebook's momentum line 1.5(a−1)/b = {1.5 * (a - 1) / b:.4f}; "
                  f"DANA-decaying (our reading of arXiv:2505.16098) {dana_exponent(a, b):.4f}.", ""]
        if len(Ts) > 1:
            d = sl["ema"][-1] - sl["sgd"][-1]
            g = cols["ema"][-1] / cols["sgd"][-1] - 1
            lines += [f"Verdict (η, β), as measured: at T = {Ts[-1]} L_T is {100 * g:+.2f}% against optimal SGD; "
                      f"last local slope {sl['ema'][-1]:.4f} against SGD's {sl['sgd'][-1]:.4f} ({d:+.4f}). "
                      + ("The slopes agree within 0.01: (η, β) with η ≤ 1 changes the constant, not the "
                         "measured exponent." if abs(d) <= 0.01 else
                         "The slopes differ by more than 0.01 at the largest horizons.")]
        if missing:
            lines += ["", f"(η, β) not solved at T = {missing} (run the benchmark to extend it)."]
        lines.append("")
        lines += scheduled_section(families_out, case)  # the optimally scheduled families, if solved
    return "\n".join(lines) + "\n"


def _start_cell(st: dict[str, Any]) -> str:
    """One start's cell: L_T, status, iterations, seconds; after the anneal search
    (``escape``) the first solve's L_T → the kept one and the anneal's first update."""
    if "escape" not in st:
        return f"{st['loss']:.10g}, {st['status']}, {st['iterations']}, {st['seconds']:.0f}"
    kept = min(st["escape"], key=lambda s: s["loss"])
    return (f"{st['first_loss']:.10g} → {st['loss']:.10g} (anneal from t = {kept['anneal_start']}, "
            f"{len(st['escape'])} solves), {st['status']}, {st['iterations']}, {st['seconds']:.0f}")


def starts_report(setting_out: Path, K: int) -> str:
    """Markdown: every horizon's (η, β) solves, per start (loss, IPOPT status, iterations,
    seconds) and the two starts' relative difference, per case."""
    lines = [f"# Two starts per horizon: optimal (η, β) on {K} refined blocks", "",
             "Each horizon is solved from the previous horizon's optimum rescaled in t/T "
             "(\"continuation\"), and up to `--second-start-max-T` also from the default "
             "candidates (\"default\"); where those disagree, also from the next longer horizon's "
             "optimum rescaled in t/T (\"from above\"); the lowest is kept. Each start is followed by the "
             "search over the block where the anneal begins (`optctl.solver.continuation.solve_escape`, "
             "points solved since it exists: \"first L_T → kept L_T\"; the anneal moved one block later "
             "or earlier and re-solved while that lowers L_T). Relative difference "
             f"(max − min)/min; above {STARTS_RTOL:g} the starts disagree. Wall seconds on a shared "
             "2-core machine, not idle (the load averages are in docs/controls.md).", ""]
    for case, recs in load_points(setting_out).items():
        lines += [f"## {case}", "", "| T | " + " | ".join(f"{k}: L_T, status, iterations, s" for k in STARTS)
                  + " | relative difference (all starts) | continuation vs from above |", "|---" * (len(STARTS) + 3) + "|"]
        for r in recs:
            by = {st["start"]: st for st in r["momentum_starts"]}
            cells = [_start_cell(by[k]) if k in by else "—" for k in STARTS]
            sp = r.get("starts_spread")
            diff = "one start" if sp is None else f"{sp:.1e}" + (" **disagree**" if sp > STARTS_RTOL else "")
            pair = "—"
            if "continuation" in by and "from above" in by:
                lo, hi = sorted(float(by[k]["loss"]) for k in ("continuation", "from above"))
                pair = f"{(hi - lo) / lo:.1e}"
            lines.append(f"| {r['T']} | " + " | ".join(cells) + f" | {diff} | {pair} |")
        lines.append("")
        for r in recs:  # points re-solved with the search keep their plain solves
            for st in r["momentum_starts"]:
                if st["start"] not in STARTS:  # e.g. a restart of a capped solve
                    lines.append(f"T = {r['T']}, {st['start']} ({st.get('from', '')}): {_start_cell(st)}; kept "
                                 f"L_T {r['momentum_loss']:.10g}, {r['momentum_status']}.")
            if r.get("plain_starts"):
                ls = [float(st["loss"]) for st in r["plain_starts"]]
                lines.append(f"T = {r['T']} before the search (plain solves, the study's earlier run): "
                             + ", ".join(f"{st['start']} {st['loss']:.10g}" for st in r["plain_starts"])
                             + f" (spread {(max(ls) - min(ls)) / min(ls):.1e}).")
        lines.append("")
    return "\n".join(lines) + "\n"


def check_starts(setting_out: Path, study: Any, cases: list[str], second_start_max_T: int) -> None:
    """Complete the two-start check of solved points: a point up to ``second_start_max_T``
    solved from one start only gets the default start; a point whose starts disagree (above
    STARTS_RTOL) gets a third, the next longer horizon's optimum rescaled in t/T ("from
    above"), which tells a local optimum of one start from an unconverged problem; a point
    whose answer stopped at the iteration cap is restarted from it in one long IPOPT round
    (``restart_capped``)."""
    for case in cases:
        recs = load_points(setting_out).get(case, [])
        for i, rec in enumerate(recs):
            names = {st["start"] for st in rec["momentum_starts"]}
            path = setting_out / "points" / f"{case}-T{rec['T']}.json"
            if rec["T"] <= second_start_max_T and "default" not in names:
                rec = add_start(study, rec, "default", escape=True)
                write_json(path, rec)
                print(f"{case} T={rec['T']}: default start added, starts differ {rec['starts_spread']:.1e}", flush=True)
            if rec.get("starts_disagree") and "from above" not in names and i + 1 < len(recs):
                rec = add_start(study, rec, "from above", init=recs[i + 1], escape=True)
                write_json(path, rec)
                print(f"{case} T={rec['T']}: start from T={recs[i + 1]['T']} added, starts differ "
                      f"{rec['starts_spread']:.1e}", flush=True)
            if rec["momentum_status"] == "Maximum_Iterations_Exceeded" and "restart" not in names:
                rec = restart_capped(study, rec)
                write_json(path, rec)
                print(f"{case} T={rec['T']}: capped answer restarted in one long round: "
                      f"{rec['momentum_status']}, L_T {rec['momentum_loss']:.10g}", flush=True)


def _point_files(setting_out: Path) -> dict[str, float]:
    """The setting's point files and their modification times."""
    return {p.name: p.stat().st_mtime for p in sorted((setting_out / "points").glob("*-T*.json"))}


def _stop(signum: int, frame: Any) -> None:
    raise SystemExit(f"stopped by signal {signum}: the point being solved is not written")


def record_run(setting_out: Path, started: dict[str, Any], before: dict[str, float],
               finished: bool = True) -> dict[str, Any]:
    """Append this run of the setting (command, whether it finished, UTC start and end, wall
    seconds, load averages at both ends, the points it solved or changed and those it found
    solved) to ``runs.json``; returns the entry."""
    after = _point_files(setting_out)
    run = {k: v for k, v in started.items() if k != "_t0"}
    entry = {**run, "finished": finished, "end_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
             "wall_s": round(time.perf_counter() - started["_t0"], 1),
             "load_end": [round(x, 2) for x in os.getloadavg()],
             "solved": [n for n in after if n not in before],
             "changed": [n for n in after if n in before and after[n] != before[n]],
             "kept": [n for n in after if n in before and after[n] == before[n]]}
    path = setting_out / "runs.json"
    runs = json.loads(path.read_text())["runs"] if path.exists() else []
    write_json(path, {"runs": [*runs, entry]})
    return entry


def runs_section(setting_out: Path) -> str:
    """Markdown: every recorded run of the setting (``runs.json``), for the end of report.md."""
    path = setting_out / "runs.json"
    if not path.exists():
        return ""
    lines = ["## Runs that wrote these points", "",
             "Wall time on a shared 2-core machine with the load averages (1, 5, 15 min) at start and "
             "end: measured under load, not the solver's speed.", "",
             "| command | start (UTC) | end | wall s | load at start | load at end | points solved | changed | kept from earlier |",
             "|---|---|---|---|---|---|---|---|---|"]
    stopped = []
    for r in json.loads(path.read_text())["runs"]:
        ld = lambda x: " / ".join(f"{v:.2f}" for v in x)  # noqa: E731
        mark = "" if r.get("finished", True) else " (stopped before the end)"
        if mark:
            stopped.append(r["start_utc"])
        lines.append(f"| `{r['command']}`{mark} | {r['start_utc']} | {r['end_utc']} | {r['wall_s']:.0f} | "
                     f"{ld(r['load_start'])} | {ld(r['load_end'])} | {len(r['solved'])} | {len(r['changed'])} | "
                     f"{len(r['kept'])} |")
    if stopped:
        lines += ["", f"The runs started at {', '.join(stopped)} were stopped: the horizons a case lacks above "
                  "were not solved, and a stopped case may lack its start checks (starts.md)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="default results/momentum_long_K<K> (results/momentum_long for K = 48)")
    p.add_argument("--K", type=int, default=DEFAULT_K,
                   help=f"refined blocks of the (η, β) solves (default {DEFAULT_K}; the study file's 48 leaves "
                        "local optima, docs/controls.md)")
    p.add_argument("--families", default="results/momentum_families")
    p.add_argument("--setting", choices=("project", "notebook", "both"), default="both")
    p.add_argument("--case", action="append", choices=("hard", "hard_b2", "easy"))
    p.add_argument("--max-T", type=int, default=100_000)
    p.add_argument("--second-start-max-T", type=int, default=10_000,
                   help="also solve from the default start up to this horizon (default 10^4)")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--no-check-starts", action="store_true",
                   help="skip completing the two-start check of solved points (check_starts)")
    args = p.parse_args()
    out = Path(args.out) if args.out else long_out_of(args.K)
    fam_out = Path(args.families)
    base = load_control_study()
    models = {k: dict(v) for k, v in load_study()["models"].items()}
    study = dataclasses.replace(base, models=models, solver=dataclasses.replace(base.solver, K=args.K))
    cases = args.case or ["hard", "easy", "hard_b2"]
    settings = ["project", "notebook"] if args.setting == "both" else [args.setting]
    command = "python benchmarks/bench_momentum_long.py " + " ".join(sys.argv[1:])
    for setting in settings:
        started: dict[str, Any] = {"command": command.strip(), "_t0": time.perf_counter(),
                                   "start_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                                   "load_start": [round(x, 2) for x in os.getloadavg()]}
        before = _point_files(out / setting)
        if not args.report_only:
            signal.signal(signal.SIGTERM, _stop)  # a stopped run still records what it did
            finished = False
            try:
                for case in cases:  # solved points are kept one file each: a stopped run resumes
                    run_momentum_study(out / setting, study=study, horizons={case: horizons_of(case, args.max_T)},
                                       setting=setting, second_start_max_T=args.second_start_max_T, escape=True)
                    if not args.no_check_starts:
                        check_starts(out / setting, study, [case], args.second_start_max_T)
                finished = True
            finally:
                entry = record_run(out / setting, started, before, finished)
                print(f"{setting}: {'finished' if finished else 'STOPPED'}, {entry['wall_s']:.0f} s wall, load "
                      f"{entry['load_start']} → {entry['load_end']}, {len(entry['solved'])} points solved, "
                      f"{len(entry['changed'])} changed, {len(entry['kept'])} kept", flush=True)
        done = {c: tuple(T for T in horizons_of(c, 100_000) if (out / setting / "points" / f"{c}-T{T}.json").exists())
                for c in ("hard", "easy", "hard_b2")}
        done = {c: hs for c, hs in done.items() if hs}
        if done:  # the setting's summary, report and figures over every solved point
            run_momentum_study(out / setting, study=study, horizons=done, setting=setting, progress=False)
            report = (out / setting / "report.md").read_text()
            write_text_atomic(out / setting / "report.md", report + runs_section(out / setting))
            write_text_atomic(out / setting / "starts.md", starts_report(out / setting, args.K))
    name = "exponents.md" if args.K == DEFAULT_K else f"exponents_K{args.K}.md"
    write_text_atomic(fam_out / name, exponent_report(out, fam_out, args.K))
    print(f"wrote {fam_out / name} and {out}/<setting>/report.md, starts.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
