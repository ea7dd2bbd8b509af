"""Packaging beyond pyproject.toml: the examples and the skills ship in the wheel as package data.

In a clone they stay at the top (examples/, skills/); the wheel carries them as improver/examples
and improver/skills, where improver.bundled finds them.
"""
from setuptools import find_namespace_packages, find_packages, setup

BUNDLED = {"improver.examples": "examples", "improver.skills": "skills"}
data = [f"{name}.{sub}" if sub else name for name, folder in BUNDLED.items()
        for sub in ["", *find_namespace_packages(folder, exclude=["*__pycache__*"])]]

setup(packages=find_packages(include=["improver", "improver.*"]) + data,
      package_dir=BUNDLED,
      package_data={"improver.report": ["template.html", "style.css"], **{name: ["*"] for name in data}},
      exclude_package_data={name: ["*.pyc"] for name in data})
