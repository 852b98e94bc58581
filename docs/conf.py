"""Sphinx configuration of the opticam_like API reference.

Build with ``.ci/docs`` (or ``sphinx-build -W --keep-going docs docs/_build/html`` after
``pip install ".[docs]"``). No network access is needed: intersphinx is not used.
"""

import opticam_like

project = "opticam_like"
author = "opticam_like developers"
copyright = "2026, opticam_like developers"
version = release = opticam_like.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
templates_path = ["_templates"]
exclude_patterns = ["_build"]

# One page per module (docs/_templates/autosummary/module.rst), generated at build time.
autosummary_generate = True
autosummary_imported_members = False
autodoc_member_order = "bysource"
autodoc_typehints = "none"          # the numpydoc sections give the types

# numpydoc: the members are documented by autodoc on the module pages, not as stub tables;
# no cross-reference checks (nitpicky off) since docstring types are free text.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = set()
nitpicky = False

html_theme = "alabaster"
html_static_path = []
