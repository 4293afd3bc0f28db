"""The engine's ground floor: torch-free contracts every layer above may read.

Nothing here imports the package's upper layers, and nothing imports torch at import time
(the recipes import it inside the functions an export runs): the command line's parser and
the app's first paint read these registries before torch is loaded.
"""
