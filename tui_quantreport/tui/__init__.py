"""The Textual app: renders the engine's plain reports; holds no statistics logic.

The house: :mod:`.app` (the App) and :mod:`.main_screen` (state, compose, routing) over
:mod:`.main_state`; ``controllers/`` (the main screen's jobs, one mixin each); ``panes/`` (the
main screen's panes and their widgets); ``screens/`` (full screens pushed over it); ``dialogs/``
(modal questions); :mod:`.workers` (the one helper every thread worker ends through);
:mod:`.messages`, :mod:`.model_session` (the app's handle on the engine) and small shared helpers.
The app reads the engine through its lazy facade (``tui_quantreport.engine``) and the torch-free
core modules only (``tests/test_layers.py`` holds it so).

Nothing in this package imports torch (or the engine modules that do) at import
time: :mod:`.model_session` imports them inside the worker threads, so the app
paints its first frame while torch is still loading.
"""
