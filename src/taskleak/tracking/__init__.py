"""Tracking: the hooks that see every task being created and every task lost.

``installer`` puts the C++ creation hook in place (asyncio's task registry on
3.10-3.13, a chaining task factory on 3.14+); ``loss_events`` records tasks
asyncio gave up on; ``scopes`` charges new tasks to check() scopes. Imports
only ``taskleak._core`` and the primitives ``frame`` and ``wait_target``.
"""

from .installer import adopted_loops, install, is_installed, live_census, live_tasks, status, uninstall

__all__ = ["install", "uninstall", "is_installed", "status", "live_tasks", "live_census", "adopted_loops"]
