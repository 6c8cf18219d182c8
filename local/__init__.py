"""The embedded platform: the local stack served for real on one machine."""
