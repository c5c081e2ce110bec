"""The APIs of tools users arrive from, on top of execbox: change the import, keep the code.

Each module is a drop-in for one tool's client (``ipybox``, ``backendai``,
``python_executor``). They run on ``execbox.Client``/``AsyncClient``, so they are embedded by
default and talk to a server when ``EXECBOX_URL`` (and ``EXECBOX_API_KEY``) are set.
"""
