"""The bundled example recordings, installed as the package ``spikeglm._example_data`` (see pyproject.toml).

Read them through :func:`spikeglm.examples.path`. This file makes the folder a regular package: the
editable install (``pip install -e .``) finds a package that lies outside its parent's folder only when
it has an ``__init__.py``.
"""
