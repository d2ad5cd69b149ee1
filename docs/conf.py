"""Sphinx configuration of the airflow-batchjob provider docs.

Build from the repository root (a warning fails the build, as in the test suite):

    sphinx-build -W -b html docs docs/_build/html

and read docs/_build/html/index.html in a browser: nothing is fetched at build or read time.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # autodoc imports airflow_batchjob from this checkout
sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))
# Importing the operators reads Airflow's config; keep Airflow from writing into the user's home.
os.environ.setdefault("AIRFLOW_HOME", str(Path(__file__).resolve().parent / "_build" / "airflow-home"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

project = "airflow-batchjob"
author = "the airflow-batchjob contributors"
copyright = "the airflow-batchjob contributors; Apache License 2.0"

from airflow_batchjob import __version__  # noqa: E402 (after the sys.path and env set-up)

release = version = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_parser",  # the changelog and CONTRIBUTING are Markdown at the repository root
    "batchjob_config",  # the [batchjob] table, generated from airflow_batchjob.config.OPTIONS
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
nitpicky = False

html_theme = "sphinx_airflow_theme"
html_title = f"airflow-batchjob {release}"
html_show_sourcelink = False

autodoc_default_options = {"members": False, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_class_signature = "separated"
napoleon_google_docstring = False
napoleon_numpy_docstring = False

myst_heading_anchors = 3
