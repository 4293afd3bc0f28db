"""The main screen's panes: the module tree, the detail pane's parts (findings, statistics, SQNR, plan,
plots), the sidebar and its fields, the calibration strip; one widget per file."""
