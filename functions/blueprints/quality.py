"""Model quality from ground truth: a timer measures every tenant's live model on the labels
its clients sent, and estimates it from confidence where labels have not come yet."""

from __future__ import annotations

import logging

import azure.functions as func
from services import each_online_tenant, services

from tenancy import contracts

bp = func.Blueprint()  # type: ignore[no-untyped-call]
logger = logging.getLogger("tenant_mlops.quality")


@bp.function_name("quality_check")
# The schedule is an app setting: the stack's quality.schedule.
@bp.timer_trigger(
    schedule=f"%{contracts.SETTING_QUALITY_SCHEDULE}%", arg_name="timer", run_on_startup=False
)
def quality_check(timer: func.TimerRequest) -> None:
    app = services()
    checks = each_online_tenant(app.settings.spec, app.quality.check, "quality check", logger)
    for tenant, check in checks:
        logger.info(
            "quality of %s: %s (%d of %d rows labelled)",
            tenant,
            check.action,
            check.labelled,
            check.scored,
        )
