"""Support code for the tests (and the widget benchmark): fakes with the core's interface
(:mod:`.fakes`) and JupyterLab + headless Chromium helpers (:mod:`.browser`).

Importable as ``fcinv_testing`` because pytest puts ``tests/`` on ``sys.path``
(``pythonpath`` in pyproject.toml); the JupyterLab started by :func:`.browser.jupyterlab`
gets it on ``PYTHONPATH`` so notebook kernels can import it too. Not installed with the package.
"""

from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent
