"""Operations over time: status, repair, the daily run, closing days, maintenance."""

from __future__ import annotations

import os

from geosid import pipeline
from geosid.cli.common import cmd_step, date_arg, settings_of, usage


def add_operations(command, sources) -> None:
    store = {"action": "store_true"}
    for name, text, options in (
        ("status", "input days (arrived, closed, awaited); per derived table its fresh, stale and missing days, and why", {}),
        (
            "repair",
            "rebuild the stale and missing days, in order, from the nearest state checkpoint",
            {
                "--from": {"dest": "from_date", "type": date_arg, "help": "also rebuild every built day from this day on"},
                "--no-validate": {**store, "help": "skip the corpus gate"},
            },
        ),
        (
            "daily",
            "the daily DAG's run of a day in one process (late drops, catch-up, the day, repairs)",
            {
                "--date": {"type": date_arg, "required": True},
                "--source": {"choices": sources, "default": "tsmc2014"},
                "--path": {"help": "file or folder of dt=YYYY-MM-DD drops"},
                "--test-start": {"type": date_arg, "help": "time split: first test day"},
                "--valid-start": {"type": date_arg, "help": "time split: first valid day"},
                "--no-validate": {**store, "help": "skip the gates"},
            },
        ),
        (
            "days",
            "close a day whose drop will not come (it builds as empty): days close --date D --source S --reason R",
            {
                "--date": {"type": date_arg, "required": True},
                "--source": {"choices": sources, "required": True},
                "--reason": {"required": True, "help": "why (shown by geosid status)"},
            },
        ),
        (
            "maintain",
            "compact, vacuum and checkpoint the tables (keeps what pinned training snapshots need)",
            {
                "--retention-hours": {"type": float, "help": "delete replaced files older than this (default: settings, 168)"},
                "--log-retention-hours": {"type": float, "help": "remove log entries older than this (default: settings, 720)"},
                "--force": {**store, "help": "also delete files pinned training snapshots need"},
                "--table": {"dest": "tables", "action": "append", "help": "only this table (repeatable)"},
            },
        ),
    ):
        p = command(name, cmd_step, text, *(("close",) if name == "days" else ()))
        for flag, kwargs in options.items():
            p.add_argument(flag, **kwargs)


def cmd_airflow(args, p) -> int:
    if args.action == "dags-folder":
        print(p.dags_folder())
        return 0
    if not args.lake and not os.environ.get("GEOSID_LAKE"):
        return usage("airflow setup needs the deployment's lake: --lake /absolute/path (or GEOSID_LAKE)")
    print(p.airflow_setup(settings_of(args).lake_root, args.pool_slots).summary())
    return 0


def add_airflow(command) -> None:
    p = command(
        "airflow",
        cmd_airflow,
        f"deploying the DAGs: setup creates the pool {pipeline.POOL} and the Variable geosid_lake "
        "(the lake of --lake or GEOSID_LAKE); dags-folder prints where the DAG files are",
        "setup",
        "dags-folder",
    )
    p.add_argument("--pool-slots", type=int, default=1, help="writing tasks at once (default: 1; the lake's lease admits one writer)")
