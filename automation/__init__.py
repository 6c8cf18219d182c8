"""The automation's domain: rollouts, the registration handler, drift and budget decisions.
It knows nothing of Azure Functions (``functions/`` wraps it) nor of any SDK (adapters do)."""
