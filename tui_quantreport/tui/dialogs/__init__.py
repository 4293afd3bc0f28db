"""Modal dialogs that ask one thing and dismiss with the answer (export, plan load, scheme picker,
confirmation)."""
