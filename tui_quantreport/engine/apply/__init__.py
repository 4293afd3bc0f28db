"""Apply the plan: export a configuration torchao, PT2E or torch.ao run, and verify it.

Torch only at import; torchao is imported when an export or a verification asks
for it (see ``engine/core/library.py``).
"""
