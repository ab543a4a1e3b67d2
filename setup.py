"""The project's metadata lives in pyproject.toml; this file lets older pip versions install it."""
from setuptools import setup

setup()
