"""The scoring container: the lean host score.py runs under (lean_host.py, also the
embedded platform's deployment process) and the Dockerfile Azure ML builds it from."""
