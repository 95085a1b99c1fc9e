"""Benchmarks of the worker (see bench/README.md); ``make bench`` runs every bench/*.py."""

from __future__ import annotations
