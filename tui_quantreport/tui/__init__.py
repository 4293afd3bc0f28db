"""The Textual app: renders the engine's plain reports; holds no statistics logic.

Nothing in this package imports torch (or the engine modules that do) at import
time: :mod:`.model_session` imports them inside the worker threads, so the app
paints its first frame while torch is still loading.
"""
