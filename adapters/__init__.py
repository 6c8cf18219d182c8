"""Adapters: the automation's platform port on Azure and on the embedded platform."""
