"""Code that runs inside a box, not in this process: ``_boxside`` ships it there as text.

``helper.py`` runs batch commands and script-language queries in the kernel; ``lua.py`` is the
``lua`` command; ``sitecustomize.py`` lets ``input()`` in a batch program ask the run loop.
"""
