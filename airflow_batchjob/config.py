"""The provider's ``[batchjob]`` settings: read through Airflow's conf, documented in provider info.

One table holds each option's type, default and description; :func:`get_provider_info` publishes
it (``airflow config list --section batchjob`` shows it) and the readers below fall back to it, so
the documented default and the one used cannot drift. Set an option as usual:
``AIRFLOW__BATCHJOB__API_CONCURRENCY=32`` or ``[batchjob] api_concurrency = 32`` in airflow.cfg.
Operator defaults (``get_logs`` ...) are read when the DAG file is parsed; the rest where used.
Also here: how Airflow's own ``[operators] default_deferrable`` is read (operators and sensors).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

SECTION = "batchjob"
VERSION_ADDED = "0.1.0"


@dataclass(frozen=True)
class Option:
    type: str  # as provider info spells it: "integer", "float", "boolean"
    default: str
    description: str


OPTIONS: dict[str, Option] = {
    "defer_settle_seconds": Option(
        "float",
        "15",
        "A trigger never fires sooner than this after it starts running: long enough for the "
        "scheduler to have handled the executor's report of the task's defer-exit (Airflow's defer "
        "race, issues 71580 and 72716). Read by the triggerer. 0 turns the hold off.",
    ),
    "complete_in_triggerer": Option(
        "boolean",
        "False",
        "A deferred task whose Jobs succeeded ends in the triggerer (Airflow's TaskSuccessEvent, with "
        "the same XComs written through the triggerer), instead of resuming on a worker: no second "
        "worker start, and immune to Airflow's defer race. Off by default: on Airflow 3.3 with "
        "PostgreSQL and two triggerers under load, a triggerer writing many such XComs stopped "
        "heartbeating for 18-29 s (docs: design, Airflow's defer race). Read by the worker when the "
        "task defers; needs a triggerer that takes XCom writes (not Airflow 3.0).",
    ),
    "watch_timeout_seconds": Option(
        "integer",
        "900",
        "How long one watch request to the apiserver lasts before it is resumed from the last "
        "resourceVersion. Longer means fewer requests; the apiserver caps it (--min-request-timeout).",
    ),
    "api_concurrency": Option(
        "integer",
        "16",
        "Concurrent apiserver calls when one task creates, patches or deletes many Jobs (a group, an "
        "Indexed Job's chunks). Raise it for large fan-outs on a big control plane, lower it to be "
        "gentler on a small one.",
    ),
    "get_logs": Option(
        "boolean",
        "True",
        "Default of the operators' get_logs: show the Pods' output in the task log while the Job runs.",
    ),
    "max_log_lines": Option(
        "integer", "1000", "Default of the operators' max_log_lines: lines shown per container."
    ),
    "max_log_streams": Option(
        "integer", "5", "Default of the operators' max_log_streams: Pods of one task followed at once."
    ),
    "diagnostics": Option(
        "boolean",
        "True",
        "Default of the operators' diagnostics: explain in the task log why fewer Pods run than "
        "requested, and push a diagnostics XCom summary.",
    ),
    "diagnose_interval": Option(
        "float", "30", "Default of the operators' diagnose_interval: seconds between repeated explanations."
    ),
    "default_ttl_seconds_after_finished": Option(
        "integer",
        "604800",
        "ttlSecondsAfterFinished of a Job whose task and template set none: the TTL controller "
        "deletes the finished Job and its Pods this long after it finished (held back until the "
        "task has read what it reports). Without one, a daily 1,000-item group leaves 1,000 Jobs "
        "and their Pods behind every day. -1: no TTL (Jobs stay until deleted).",
    ),
    "max_summary_pods": Option(
        "integer",
        "2000",
        "Above this many Pods, the diagnostics summary counts the Pods instead of listing them (keeps "
        "the XCom small).",
    ),
    "job_link_template": Option(
        "string",
        "",
        "An extra link on every task of this provider, to its Jobs elsewhere (a Kubernetes "
        "dashboard, Lens, a log search): a URL with {namespace}, {name} (the Job, or the group) and "
        "{selector} (the label selector of the task instance's Jobs), each URL-encoded. Empty (the "
        "default): no such link.",
    ),
}


def provider_config() -> dict[str, Any]:
    """The ``config`` entry of provider info."""
    return {
        SECTION: {
            "description": "airflow-batchjob's deployment-wide settings.",
            "options": {
                name: {
                    "description": o.description,
                    "version_added": VERSION_ADDED,
                    "type": o.type,
                    "example": None,
                    "default": o.default,
                }
                for name, o in OPTIONS.items()
            },
        }
    }


def get(name: str) -> Any:
    """The option's value from Airflow's conf (env, airflow.cfg, secrets), typed; else its default."""
    from airflow.configuration import conf

    option = OPTIONS[name]
    if option.type == "boolean":
        return conf.getboolean(SECTION, name, fallback=option.default == "True")
    if option.type == "integer":
        return conf.getint(SECTION, name, fallback=int(option.default))
    if option.type == "string":
        return conf.get(SECTION, name, fallback=option.default)
    return conf.getfloat(SECTION, name, fallback=float(option.default))


def default_deferrable() -> bool:
    """``[operators] default_deferrable`` where the deployment set it, else True (this provider's
    default: a waiting task costs no worker slot).

    "Set" means the environment (``AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE``, ``_CMD``, ``_SECRET``)
    or a value other than Airflow's shipped default (False): ``airflow.cfg`` files are generated
    with every default written out, so a False there cannot be told from no setting at all.
    Without a running triggerer, deferred tasks stay ``deferred``: pass ``deferrable=False``.
    """
    from airflow.configuration import conf

    value = conf.getboolean("operators", "default_deferrable", fallback=True)
    names = [f"AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE{s}" for s in ("", "_CMD", "_SECRET")]
    return value if any(n in os.environ for n in names) else True
