from __future__ import annotations


def worker_components(ctx):
    return []
