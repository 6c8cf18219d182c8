"""The Function App (Python v2 programming model): it only composes the blueprints."""

import azure.functions as func
from blueprints import audit, budgets, drift, quality, registry, rollouts

app = func.FunctionApp()
app.register_functions(registry.bp)
app.register_functions(rollouts.bp)
app.register_functions(budgets.bp)
app.register_functions(drift.bp)
app.register_functions(audit.bp)
app.register_functions(quality.bp)
