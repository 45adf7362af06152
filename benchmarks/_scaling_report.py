"""The Markdown report of ``benchmarks/scaling.py`` (the tables ``docs/scaling.md`` quotes)."""

from __future__ import annotations

from _scaling_model import ASSUMED_LINK_BYTES_PER_S


def _ms(x: float) -> str:
    return f"{x * 1e3:,.1f}"


def _mode(p: dict) -> str:
    if p["mode"] == "core":
        return "per core"
    name = f"{p['nodes']} nodes x {p['workers'] // p['nodes']}"
    if p.get("node_local") == "queue":
        name += ", queue"
    if p.get("min_candidates"):
        name += f", quorum {p['min_candidates']} of {p['population']}"
    return name


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
        *([f"| node pool, per piece, wall | {c['pool_per_candidate_s'] * 1e3:.3f} ms | nodeq's "
           f"WorkerPool, 2 processes, {c['node_pool']['items']} one-candidate pieces of no "
           f"cost: {c['node_pool']['per_piece_s'] * 1e3:.3f} ms a piece, so 2 x that a "
           "piece on each process (validation) |",
           f"| node pool, per piece, CPU of the dispatcher | "
           f"{c['pool_per_candidate_cpu_s'] * 1e3:.3f} ms | the same rounds (projection) |",
           f"| node pool, distribution to a process, wall | "
           f"{1 / max(c['node_pipe_s_per_byte'], 1e-12) / 1e6:,.0f} MB/s | the same pool, "
           f"a {c['node_pool']['big_params']:,}-parameter distribution against a 1,000 one |",
           f"| node pool, distribution to a process, CPU of the dispatcher | "
           f"{1 / max(c['node_pipe_cpu_s_per_byte'], 1e-12) / 1e6:,.0f} MB/s | the same "
           "rounds (projection) |"]
          if "node_pool" in c else
          [f"| local pool, per candidate | {c['pool_per_candidate_s'] * 1e3:.3f} ms "
           "| multiprocessing.Pool(2), no-op items |"]),
        f"| driver ask+tell | {c['driver']['intercept_s'] * 1e3:.2f} ms + "
        f"{c['driver']['s_per_pop_param'] * 1e9:.3f} ns x population x params | OpenAIES, fit |",
        *_close_constants(c.get("close")),
        "", "No-op generations (the fit's points):", "",
        "| workers | tasks | wall (ms) | fit (ms) | client + scheduler CPU (ms) |",
        "|---|---|---|---|---|",
    ]
    for p in res["noop"]:
        lines.append(f"| {p['workers']} | {p['tasks']} | {_ms(p['wall_s'])} | "
                     f"{_ms(c['fixed_s'] + c['per_task_s'] * p['tasks'])} | "
                     f"{_ms(p['driver_cpu_s'])} |")
    lines += _close_points(c.get("close"))
    lines += ["", "Driver (OpenAIES ask + tell + pickling the distribution):", "",
              "| population | params | ms |", "|---|---|---|"]
    lines += [f"| {p['population']:,} | {p['num_params']:,} | {_ms(p['seconds'])} |"
              for p in c["driver"]["points"]]
    lines += [
        "", "### Loopback simulation and validation", "",
        "| mode | workers (processes) | regime | scale | population | tasks | wall (ms) | "
        "scheduled ideal (ms) | balanced ideal (ms) | overhead (ms) | efficiency | predicted "
        "(ms) | error | efficiency, predicted |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in res["simulation"]:
        lines.append(
            f"| {_mode(p)} | {p['workers']} ({p['processes']}) | {p['regime']} | {p['scale']:.3g} | "
            f"{p['population']} | {p['tasks']} | {_ms(p['wall_s'])} | {_ms(p['scheduled_s'])} | "
            f"{_ms(p['balanced_s'])} | {_ms(p['overhead_s'])} | {p['efficiency']:.3f} | "
            f"{_ms(p['predicted_s'])} | {p['error']:+.1%} | "
            f"{p.get('predicted_efficiency', float('nan')):.3f} |")
    lines += ["", f"Validation: median |error| {v['median_abs_error']:.1%}, max "
              f"{v['max_abs_error']:.1%} (with each run's own draws instead of the expected "
              f"rollout time: median {v['median_abs_error_own_draws']:.1%}).", ""]
    if "tell" in c:
        lines += tell_report(c["tell"], res["projection"]["num_params"])
    pr = res["projection"]
    lines += [
        f"### Projection: population {pr['population']:,}, {pr['num_params']:,} parameters "
        f"({pr['dist_bytes']:,} B distribution), {pr['workers']:,} workers", "",
        f"{c['per_task_cpu_s'] * 1e3:.3f} ms per task (CPU); broadcast at an assumed "
        f"{ASSUMED_LINK_BYTES_PER_S * 8 / 1e9:g} Gbit/s; node mode's work queue in pieces of "
        f"{pr['piece']} candidate(s). *local*: the tell's noise sum on the driver; "
        "*distributed*: cut into the fastest number of parts (in brackets).", "",
        "| regime | mode | told | tasks | fixed+tasks (s) | close (s) | broadcast (s) "
        "| rollouts (s) | ideal (s) | driver, local (s) | generation, local (s) "
        "| efficiency, local | driver, distributed (s) | generation, distributed (s) "
        "| efficiency, distributed | without driver |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in pr["rows"]:
        lo, di = r["local"], r["distributed"]
        t = lo["terms"]
        lines.append(
            f"| {r['regime']} | {r['mode']} | {lo['told']:,} | {r['tasks']:,} | "
            f"{t['fixed'] + t['tasks']:.3f} | {t.get('close', 0.0):.3f} | "
            f"{t['broadcast']:.3f} | {t['rollouts']:.3f} | "
            f"{lo['ideal_s']:.3f} | {t['driver']:.3f} | {t['total']:.3f} | "
            f"{lo['efficiency']:.2f} | {di['terms']['driver']:.3f} [{di['tell']['parts']}] | "
            f"{di['terms']['total']:.3f} | {di['efficiency']:.2f} | "
            f"{di['efficiency_evaluate_only']:.2f} |")
    lines += ["", "The work queue's rows, distributed tell: the cores' time from the chunks' "
              "arrival to the close (*rollouts* x workers), and how late a process starts a "
              "generation on average because a piece of the previous one still runs:", "",
              "| regime | mode | told | wasted (episodes not told) | idle or dispatch "
              "| late start (ms) |", "|---|---|---|---|---|---|"]
    for r in pr["rows"]:
        if "split" in r:
            x = r["split"]["distributed"]
            lines.append(f"| {r['regime']} | {r['mode']} | {x['told']:.1%} | "
                         f"{x['wasted']:.1%} | {x['idle']:.1%} | "
                         f"{_ms(r['late_s']['distributed'])} |")
    return "\n".join(lines)


def _close_constants(close: dict | None) -> list[str]:
    """The close's constants rows (``_scaling_close.py``), if measured."""
    if close is None:
        return []
    m, t = close["message"], close["tasks"]
    return [
        f"| node-mode close, one message, CPU of client + scheduler | "
        f"{m['cpu_fixed_s'] * 1e3:.3f} ms + {m['per_node_cpu_s'] * 1e3:.3f} ms per node "
        f"(gross: {m['cpu_gross_fixed_s'] * 1e3:.3f} ms + {m['per_node_cpu_gross_s'] * 1e3:.3f} "
        f"ms) | `Client.run` of a `close_round` answering a {close['size']}-candidate record, "
        f"{', '.join(str(n) for n in close['counts'])} loopback nodes, net of the idle rate, "
        "fit (projection) |",
        f"| node-mode close before it, stop message + a pinned harvest task per node, CPU | "
        f"{t['cpu_fixed_s'] * 1e3:.3f} ms + {t['per_node_cpu_s'] * 1e3:.3f} ms per node "
        f"(gross: {t['cpu_gross_fixed_s'] * 1e3:.3f} ms + {t['per_node_cpu_gross_s'] * 1e3:.3f} "
        "ms) | the same nodes and records, interleaved, fit (the what-if row) |",
    ]


def _close_points(close: dict | None) -> list[str]:
    if close is None:
        return []
    lines = ["", f"Node-mode close ({close['measured_utc']} UTC, load average "
             f"{close['load_average_1min'][0]:g} to {close['load_average_1min'][1]:g}; medians "
             f"of {close['repeats']}; idle, this process used {close['idle_cpu_per_s']:.1%} of "
             "a core: *net* is the CPU less that rate over the wall time):", "",
             "| nodes | one message, wall (ms) | CPU (ms) | CPU, net (ms) "
             "| stop + tasks, wall (ms) | CPU (ms) | CPU, net (ms) |",
             "|---|---|---|---|---|---|---|"]
    for m, t in zip(close["message"]["points"], close["tasks"]["points"]):
        lines.append(f"| {m['nodes']} | {_ms(m['wall_s'])} | {_ms(m['cpu_s'])} | "
                     f"{_ms(m['cpu_net_s'])} | {_ms(t['wall_s'])} | {_ms(t['cpu_s'])} | "
                     f"{_ms(t['cpu_net_s'])} |")
    return lines


def tell_report(tell: dict, num_params: int) -> list[str]:
    """The distributed tell's constants, its loopback check, and its model at the paper's
    size for each number of parts."""
    from _scaling_model import TELL_PARTS, tell_seconds

    rem = tell["remote"]
    lines = [
        "", "### The tell: constants", "",
        "| constant | value | from |", "|---|---|---|",
        f"| noise-row sum, per value | {tell['row_s_per_value'] * 1e9:.3f} ns | "
        f"`NoiseTable.weighted_sum`, {', '.join(str(p['rows']) for p in tell['row_sum']['points'])}"
        f" rows x {num_params:,}, fit |",
        f"| driver without the sum | {_ms(tell['driver_rest_s'])} ms | OpenAIES ask + pickle + "
        f"tell, population {tell['driver']['population']:,}, `noise_sum` returning zeros "
        f"(with the local sum: {_ms(tell['driver']['local_s'])} ms) |",
        f"| a part, wall on loopback | {_ms(tell['part_overhead_s'])} ms | "
        "`DaskWeightedSum`, one row per part, 2 workers |",
        f"| a part, CPU of client + scheduler | {_ms(tell['part_overhead_cpu_s'])} ms | the "
        "same calls (projection) |",
        f"| adding a part's vector | {tell['add_s_per_value'] * 1e9:.3f} ns per value | "
        "`np.add` float64 |",
        "", f"`DaskWeightedSum` on 2 loopback workers, {rem['rows']:,} rows x "
        f"{rem['num_params']:,} (the paper's generation), against the model with the loopback "
        "constants (a part's wall cost above, the parts taking turns on 2 workers, the "
        "loopback broadcast rate):", "",
        "| parts | remote (ms) | local sum, same run (ms) | model (ms) | error | client + "
        "scheduler CPU (ms) | the same, one row per part (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in rem["points"]:
        pred = tell_seconds(tell, rem["rows"], rem["num_params"], parts=p["parts"],
                            per_part_s=tell["part_overhead_s"], workers=rem["workers"],
                            link_bytes_per_s=tell["loopback_bytes_per_s"])
        model = pred["total"] - pred["rest"]
        lines.append(f"| {p['parts']} | {_ms(p['seconds'])} | {_ms(p['local_s'])} | "
                     f"{_ms(model)} | {model / p['seconds'] - 1:+.1%} | "
                     f"{_ms(p['cpu_s']) if 'cpu_s' in p else 'not measured'} | "
                     f"{_ms(p['one_row_per_part_cpu_s'])} |")
    rows = tell["driver"]["population"] // 2
    link = {"per_part_s": tell["part_overhead_cpu_s"], "link_bytes_per_s": ASSUMED_LINK_BYTES_PER_S}
    local = tell_seconds(tell, rows, num_params, parts=None, **link)["total"]
    lines += ["", f"The driver's ask + tell at {rows:,} rows x {num_params:,}, projected "
              f"(a part on a node of its own, {ASSUMED_LINK_BYTES_PER_S * 8 / 1e9:g} Gbit/s "
              f"to the driver); the local sum: {_ms(local)} ms.", "",
              "| parts | ship (ms) | parts' tasks (ms) | slowest part's sum (ms) | vectors back "
              "(ms) | total (ms) | tree of parts, not built (ms) | float32 vectors (ms) |",
              "|---|---|---|---|---|---|---|---|"]
    for k in TELL_PARTS:
        t = tell_seconds(tell, rows, num_params, parts=k, **link)
        tree = tell_seconds(tell, rows, num_params, parts=k, tree=True, **link)
        f32 = tell_seconds(tell, rows, num_params, parts=k, vector_bytes=4, **link)
        lines.append(f"| {k} | {_ms(t['ship'])} | {_ms(t['parts'])} | {_ms(t['part_sum'])} | "
                     f"{_ms(t['back'])} | {_ms(t['total'])} | {_ms(tree['total'])} | "
                     f"{_ms(f32['total'])} |")
    return lines + [""]
