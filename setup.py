"""Build of the optional C extension; all other metadata is in ``pyproject.toml``.

``opticam_like.background._boxstats`` is the kernel of the global background (sigma-clipped box
statistics). It is plain C that uses only the Python C API and the buffer protocol, so it needs
no build dependency besides setuptools. It is optional: without a working C compiler
(``CC=/bin/false pip install .``) the build skips it and ``opticam_like.background.clipping``
uses its NumPy implementation of the same statistics.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("opticam_like.background._boxstats",
                             sources=["opticam_like/background/_boxstats.c"],
                             optional=True)])
