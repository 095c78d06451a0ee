"""Widgets the panes and dialogs are built from: the token view, plots, tables, layout helpers, the lens's
clamp controls, the ablation underlines. A widget knows no pane (import-linter checks it)."""
