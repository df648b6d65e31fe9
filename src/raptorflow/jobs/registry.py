"""The one list of modules holding job tasks; a domain appends its `raptorflow.<domain>.tasks` here."""

from __future__ import annotations

import importlib

TASK_MODULES: list[str] = [
    "raptorflow.jobs.tasks",
    "raptorflow.jobs.usage",
    "raptorflow.billing.tasks",
    "raptorflow.webhooks.tasks",
    "raptorflow.sharing.imports.tasks",
    "raptorflow.sharing.feeds.tasks",
    "raptorflow.accounts.tasks",
    "raptorflow.intel.indicators.tasks",
]


def load_tasks() -> None:
    """Import every task module so its `@task` handlers are registered (API, worker and CLI alike)."""
    for module in TASK_MODULES:
        importlib.import_module(module)
