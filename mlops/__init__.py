"""The `mlops` command line: plan, and (as the platform grows) run, score and operate it."""
