"""The Markdown report of ``benchmarks/scaling.py`` (the tables ``docs/scaling.md`` quotes)."""

from __future__ import annotations

from _scaling_model import ASSUMED_LINK_BYTES_PER_S


def _ms(x: float) -> str:
    return f"{x * 1e3:,.1f}"


def _mode(p: dict) -> str:
    return "per core" if p["mode"] == "core" else f"{p['nodes']} nodes x {p['workers'] // p['nodes']}"


def report(res: dict) -> str:
    c, v = res["constants"], res["validation"]
    lines = [
        "### Constants (measured on this machine)", "",
        "| constant | value | from |", "|---|---|---|",
        f"| fixed cost per generation | {_ms(c['fixed_s'])} ms | no-op generations, fit |",
        f"| cost per Dask task, wall | {c['per_task_s'] * 1e3:.3f} ms | no-op generations, fit "
        "(validation) |",
        f"| cost per Dask task, CPU of client + scheduler | {c['per_task_cpu_s'] * 1e3:.3f} ms "
        "| no-op generations, fit (projection) |",
        f"| broadcast, loopback | {1 / max(c['broadcast_s_per_byte'], 1e-12) / 1e6:,.0f} MB/s "
        "| big vs small distribution |",
        f"| local pool, per candidate | {c['pool_per_candidate_s'] * 1e3:.3f} ms "
        "| multiprocessing.Pool(2), no-op items |",
        f"| driver ask+tell | {c['driver']['intercept_s'] * 1e3:.2f} ms + "
        f"{c['driver']['s_per_pop_param'] * 1e9:.3f} ns x population x params | OpenAIES, fit |",
        "", "No-op generations (the fit's points):", "",
        "| workers | tasks | wall (ms) | fit (ms) | client + scheduler CPU (ms) |",
        "|---|---|---|---|---|",
    ]
    for p in res["noop"]:
        lines.append(f"| {p['workers']} | {p['tasks']} | {_ms(p['wall_s'])} | "
                     f"{_ms(c['fixed_s'] + c['per_task_s'] * p['tasks'])} | "
                     f"{_ms(p['driver_cpu_s'])} |")
    lines += ["", "Driver (OpenAIES ask + tell + pickling the distribution):", "",
              "| population | params | ms |", "|---|---|---|"]
    lines += [f"| {p['population']:,} | {p['num_params']:,} | {_ms(p['seconds'])} |"
              for p in c["driver"]["points"]]
    lines += [
        "", "### Loopback simulation and validation", "",
        "| mode | workers (processes) | regime | scale | population | tasks | wall (ms) | "
        "scheduled ideal (ms) | balanced ideal (ms) | overhead (ms) | efficiency | predicted "
        "(ms) | error |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in res["simulation"]:
        lines.append(
            f"| {_mode(p)} | {p['workers']} ({p['processes']}) | {p['regime']} | {p['scale']:.3g} | "
            f"{p['population']} | {p['tasks']} | {_ms(p['wall_s'])} | {_ms(p['scheduled_s'])} | "
            f"{_ms(p['balanced_s'])} | {_ms(p['overhead_s'])} | {p['efficiency']:.3f} | "
            f"{_ms(p['predicted_s'])} | {p['error']:+.1%} |")
    lines += ["", f"Validation: median |error| {v['median_abs_error']:.1%}, max "
              f"{v['max_abs_error']:.1%} (with each run's own draws instead of the expected "
              f"rollout time: median {v['median_abs_error_own_draws']:.1%}).", ""]
    pr = res["projection"]
    lines += [
        f"### Projection: population {pr['population']:,}, {pr['num_params']:,} parameters "
        f"({pr['dist_bytes']:,} B distribution), {pr['workers']:,} workers", "",
        f"Driver {_ms(pr['driver_s'])} ms ({pr['driver_from']}); "
        f"{c['per_task_cpu_s'] * 1e3:.3f} ms per task (CPU); broadcast at an assumed "
        f"{ASSUMED_LINK_BYTES_PER_S * 8 / 1e9:g} Gbit/s.", "",
        "| regime | mode | tasks | fixed+tasks (s) | broadcast (s) | rollouts (s) | ideal (s) "
        "| driver (s) | generation (s) | efficiency | without driver |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in pr["rows"]:
        t = r["terms"]
        lines.append(
            f"| {r['regime']} | {r['mode']} | {r['tasks']:,} | {t['fixed'] + t['tasks']:.3f} | "
            f"{t['broadcast']:.3f} | {t['rollouts']:.3f} | {r['ideal_s']:.3f} | "
            f"{t['driver']:.3f} | {t['total']:.3f} | {r['efficiency']:.2f} | "
            f"{r['efficiency_evaluate_only']:.2f} |")
    return "\n".join(lines)
