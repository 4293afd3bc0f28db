"""Small model files used by the engine and command-line tests."""
