"""Boxes: isolated environments behind one small protocol (``base``), one package per backend."""
