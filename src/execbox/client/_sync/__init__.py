# Generated from ../_async by scripts/unasync: do not edit.
