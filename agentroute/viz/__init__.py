"""Drawings of learned router state (matplotlib, Agg canvas; needs the ``eval`` extra)."""
