"""`fast`: placeholder module, filled in by the fast-preset work."""
