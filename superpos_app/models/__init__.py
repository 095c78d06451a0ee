"""Qt item models over numpy columns (``QAbstractTableModel``): the unit table, the lens's tables.
A model knows no widget and no pane (import-linter checks it)."""
