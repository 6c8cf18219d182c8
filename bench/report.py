"""bench/results/README.md from the benchmarks' JSON: machine, versions, commands, medians and
the ratios against each peer measured in the same run, with the issue's targets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def serving(result: dict[str, Any]) -> list[str]:
    machine = result["machine"]
    lines = [
        "## Serving: one ONNX model, four servers (`bench/serving.py`)",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB, "
        f"Python {machine['python']}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
        + "; scoring environment: "
        + ", ".join(f"{k} {v}" for k, v in machine["scoring_environment"].items())
        + ".",
        "",
        f"Method: {result['method']}. Model: {result['model']}. Command: `{result['command']}`.",
        "",
        "(a) gateway = the embedded platform's gateway, everything on, + one deployment "
        "process; (b) azmlinfsrv = azureml-inference-server-http running score.py; "
        "(c) mlflow_serve = `mlflow models serve`; (d) floor = uvicorn + onnxruntime.",
        "",
    ]
    rows = [
        [
            r["server"],
            r["batch"],
            r["connections"],
            r["requests_per_second"],
            r["p50_ms"],
            r["p99_ms"],
            r["errors"],
            r["cpu_ms_per_request"],
            r["rss_mb"],
        ]
        for r in result["rows"]
    ]
    lines += _table(
        [
            "server",
            "batch",
            "connections",
            "req/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "CPU ms/req",
            "RSS MB",
        ],
        rows,
    )
    lines += ["", "Ratios of (a) against each peer, same run, and the targets:", ""]
    target_rows = []
    for ratio in result["ratios"]:
        for name, target in ratio["targets"].items():
            target_rows.append(
                [
                    ratio["batch"],
                    ratio["connections"],
                    name,
                    target["ratio"],
                    target["target"],
                    "met" if target["met"] else "**not met**",
                ]
            )
    lines += _table(["batch", "connections", "target", "ratio", "wanted", "verdict"], target_rows)
    others = [
        [
            r["batch"],
            r["connections"],
            *(r.get(f"throughput_vs_{p}") for p in ("azmlinfsrv", "mlflow_serve", "floor")),
            *(r.get(f"p99_vs_{p}") for p in ("azmlinfsrv", "mlflow_serve", "floor")),
        ]
        for r in result["ratios"]
    ]
    lines += ["", "All ratios (throughput: higher is better for (a); p99: lower is better):", ""]
    lines += _table(
        [
            "batch",
            "connections",
            "req/s vs azmlinfsrv",
            "vs mlflow",
            "vs floor",
            "p99 vs azmlinfsrv",
            "vs mlflow",
            "vs floor",
        ],
        others,
    )
    return [*lines, ""]


def pooled(result: dict[str, Any]) -> list[str]:
    warm = result["warm_cache_50_tenants"]
    alone = result["single_tenant_alone"]
    noisy = result["single_tenant_with_49_neighbours"]
    cold = result["cold_load"]
    return [
        "## Pooled serving: 50 tenants on one deployment (`bench/pooled.py`)",
        "",
        f"Method: {result['method']}. Command: `{result['command']}`.",
        "",
        *_table(
            ["measure", "value"],
            [
                [
                    "first request of a tenant (model loaded), median ms",
                    cold["cold_first_request_ms_median"],
                ],
                ["first request of a tenant, max ms", cold["cold_first_request_ms_max"]],
                ["second request (cached), median ms", cold["warm_second_request_ms_median"]],
                ["warm cache, 50 tenants x 1 connection: req/s", warm["requests_per_second"]],
                ["warm cache: p50 / p99 ms", f"{warm['p50_ms']} / {warm['p99_ms']}"],
                ["warm cache: RSS MB (gateway + deployment)", warm["rss_mb"]],
                ["warm cache: errors", warm["errors"]],
                [
                    "one tenant alone (8 connections): req/s, p99 ms",
                    f"{alone['requests_per_second']}, {alone['p99_ms']}",
                ],
                [
                    "same tenant while 49 others load (49 connections): req/s, p99 ms",
                    f"{noisy['requests_per_second']}, {noisy['p99_ms']}",
                ],
                ["share of its throughput kept", noisy["throughput_share_kept"]],
            ],
        ),
        "",
    ]


def drift(result: dict[str, Any]) -> list[str]:
    contenders = result["contenders"]
    return [
        "## Drift: ours against Evidently and scipy (`bench/drift_vs_evidently.py`)",
        "",
        f"Data: {result['data']}.",
        "",
        *_table(
            ["contender", "seconds (median)", "runs", "peak MB"],
            [
                [name, c["seconds_median"], c["seconds_runs"], c["peak_mb"]]
                for name, c in contenders.items()
            ],
        ),
        "",
        f"Speed-up vs Evidently {result['speedup_vs_evidently']}x, memory "
        f"{result['memory_ratio_vs_evidently']}x of Evidently's, verdicts agree: "
        f"{result['verdicts_agree']}. Targets: {result['targets']}.",
        "",
    ]


def drift_streaming(result: dict[str, Any]) -> list[str]:
    function = result["function"]
    return [
        "## Streaming drift at 100 million rows (`bench/drift_streaming.py`)",
        "",
        f"Method: {result['method']}. Command: `{result['command']}`.",
        "",
        *_table(
            ["rows", "seconds", "rows a second", "own peak MB", "verdict"],
            [
                [
                    f"{r['rows']:,}",
                    r["seconds"],
                    f"{r['rows_per_second']:,}",
                    r["peak_rss_mb"],
                    f"{r['verdict']} ({', '.join(r['drifted_features'])})",
                ]
                for r in result["runs"]
            ],
        ),
        "",
        f"What one Function instance measures (Flex Consumption, {function['memory_mb']} MB, "
        f"{function['timeout_seconds']} s): collected lines parse at "
        f"{function['parse_rows_per_second']:,} rows/s, parsed and measured at "
        f"{function['rows_per_second_parsed_and_measured']:,} rows/s; an hour's parsed rows take "
        f"{function['parsed_row_bytes']} bytes each. At most "
        f"{function['function_max_rows_per_day']:,} rows a day (the lower of a third of the "
        "timeout and an hour's rows in half the memory): `drift.function_max_rows_per_day` "
        "defaults below it.",
        "",
    ]


def plan(result: dict[str, Any]) -> list[str]:
    rows = result["results"]
    sharded = [r for r in rows if r.get("shards")]
    return [
        "## `mlops plan` scaling (`bench/plan_scaling.py`)",
        "",
        f"Command: `{result['command']}`, one run per size and mode: one stack confined to "
        "one subscription; one stack placed on as many as Azure's limits need; shard "
        "stacks (the shared stack, then one stack per subscription, two at a time, each in "
        "a process of its own).",
        "",
        *_table(
            [
                "tenants", "mode", "subscriptions", "stamps", "resources",
                "mandatory violations", "seconds", "ms/resource", "peak RSS MB",
            ],
            [
                [
                    r["tenants"], r.get("mode", "-"), r.get("subscriptions", 1),
                    r.get("stamps", "-"), r["resources"], r.get("mandatory_violations", "-"),
                    r["seconds"], r["ms_per_resource"], r["peak_rss_mb"],
                ]
                for r in rows
            ],
        ),
        "",
        *(
            [
                "Per stack, with shard stacks (seconds and own peak memory of each stack's "
                "plan):",
                "",
                *_table(
                    [
                        "tenants", "shared stack s", "shared stack MB", "shards",
                        "resources a shard (median)", "shard s (median / max)",
                        "shard MB (median / max)",
                    ],
                    [
                        [
                            r["tenants"], r["shared_stack"]["seconds"],
                            r["shared_stack"]["peak_rss_mb"], r["shards"]["count"],
                            r["shards"]["resources_median"],
                            f"{r['shards']['seconds_median']} / {r['shards']['seconds_max']}",
                            f"{r['shards']['peak_rss_mb_median']} / "
                            f"{r['shards']['peak_rss_mb_max']}",
                        ]
                        for r in sharded
                    ],
                ),
                "",
            ]
            if sharded
            else []
        ),
        *[
            f"- {r['tenants']} tenants, {r.get('mode', '')}, on {r['subscriptions']} "
            f"subscription(s): {message}"
            for r in rows
            for message in r.get("azure_limits", [])[:1]
        ],
        "",
    ]  # fmt: skip


def scoring(result: dict[str, Any]) -> list[str]:
    return [
        "## In-process scoring: ONNX against scikit-learn (`bench/scoring_latency.py`)",
        "",
        f"Method: {result['method']}.",
        "",
        *_table(
            ["kind", "batch", "scikit-learn us", "onnx us", "speed-up"],
            [
                [r["kind"], r["batch"], r["sklearn_us"], r["onnx_us"], r["speedup"]]
                for r in result["rows"]
            ],
        ),
        "",
    ]


def container(result: dict[str, Any]) -> list[str]:
    rows = result["serving"]["rows"]
    lines = [
        "## The scoring container against azureml-inference-server-http (`bench/container.py`)",
        "",
        f"Method: {result['method']}. Command: `{result['command']}`.",
        "",
        *_table(
            ["server", "batch", "connections", "req/s", "p50 ms", "p99 ms", "CPU ms/req"],
            [
                [
                    r["server"],
                    r["batch"],
                    r["connections"],
                    r["requests_per_second"],
                    r["p50_ms"],
                    r["p99_ms"],
                    r["cpu_ms_per_request"],
                ]
                for r in rows
            ],
        ),
        "",
        "Ratios at the same worker count (targets: throughput >= 4x at batch 1 and >= 1.5x at "
        "batch 100, p99 <= 1/3, and, with one worker, >= 0.8x the floor):",
        "",
        *_table(
            [
                "workers",
                "batch",
                "connections",
                "throughput",
                "p99",
                "CPU ms",
                "vs floor",
                "targets met",
            ],
            [
                [
                    e["workers"],
                    e["batch"],
                    e["connections"],
                    e.get("throughput_vs_azmlinfsrv"),
                    e.get("p99_vs_azmlinfsrv"),
                    e.get("cpu_ms_vs_azmlinfsrv"),
                    e.get("throughput_vs_floor", ""),
                    ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in e["targets"].items()),
                ]
                for e in result["serving"]["ratios"]
            ],
        ),
        "",
    ]
    pool = result.get("pool")
    if pool:
        lines += [
            f"Dense pool: {pool['tenants']} tenants' models on one deployment, one worker.",
            "",
            *_table(
                ["measure", "value"],
                [
                    [
                        "cold load (first request of a tenant) p50 / p99 / max ms",
                        f"{pool['cold_load_ms']['p50']} / {pool['cold_load_ms']['p99']} / "
                        f"{pool['cold_load_ms']['max']}",
                    ],
                    ["RSS with every model loaded, MB", pool["rss_mb"]["all_loaded"]],
                    ["memory per loaded model, KB", pool["memory_per_loaded_model_kb"]],
                    [
                        "one tenant alone: req/s, p99 ms",
                        f"{pool['one_tenant_alone']['requests_per_second']}, "
                        f"{pool['one_tenant_alone']['p99_ms']}",
                    ],
                    [
                        "beside 999 loaded neighbours: req/s, p99 ms",
                        f"{pool['one_tenant_beside_999']['requests_per_second']}, "
                        f"{pool['one_tenant_beside_999']['p99_ms']}",
                    ],
                    ["p99 beside / alone", pool["p99_beside_vs_alone"]],
                    *[[k, "met" if v else "not met"] for k, v in pool["targets"].items()],
                ],
            ),
            "",
        ]
    return lines


def main() -> None:
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`bench/report.py`) from the JSON files beside this one; "
        "every figure is a median of the runs each JSON lists. Nothing here is asserted in "
        "tests.",
        "",
    ]
    for name, render in (
        ("serving", serving),
        ("container", container),
        ("pooled", pooled),
        ("drift_vs_evidently", drift),
        ("drift_streaming", drift_streaming),
        ("plan_scaling", plan),
        ("scoring_latency", scoring),
    ):
        result = _load(name)
        lines += render(result) if result else [f"## {name}", "", "Not run yet.", ""]
    (RESULTS / "README.md").write_text("\n".join(lines))
    print(f"wrote {RESULTS / 'README.md'}")


if __name__ == "__main__":
    main()
