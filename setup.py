"""Finds the packages: trajgraph's own, and the top-level graphs/ and adapters/ folders,
which install as trajgraph.graphs and trajgraph.adapters (package-dir in pyproject.toml)."""

from setuptools import find_packages, setup


def _under(folder: str, name: str) -> list[str]:
    return [name] + [f"{name}.{sub}" for sub in find_packages(folder)]


setup(packages=find_packages(include=["trajgraph", "trajgraph.*"])
      + _under("graphs", "trajgraph.graphs") + _under("adapters", "trajgraph.adapters"))
