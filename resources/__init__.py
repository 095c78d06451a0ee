"""Data files shipped with superpos (presets, style sheet, icons). Imported as ``superpos_resources``."""
