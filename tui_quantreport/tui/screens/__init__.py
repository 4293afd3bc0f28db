"""Full screens pushed over the main screen (help, layers, frontier, verify, errors) and the widgets
only they show."""
