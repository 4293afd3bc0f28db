"""A text input whose editing keys apply in the order they were typed.

Textual runs a widget's key bindings (``ctrl+u``, ``backspace``, ``home``…)
when the key event bubbles back up to the app, while printable characters are
inserted by the widget itself as the event arrives. Typed quickly (a paste, or
``e`` then ``ctrl+u`` and a path), a binding can land after the letters that
followed it. This input runs its own editing bindings as it receives each key,
so the field always ends up with what was typed.
"""

from __future__ import annotations

from textual import events
from textual.widgets import Input


class OrderedInput(Input):
    """An :class:`Input` that applies its own editing bindings in typing order."""

    async def _on_key(self, event: events.Key) -> None:
        bindings = self._bindings.key_to_bindings.get(event.key)
        if bindings and self.check_action(bindings[0].action, ()) is not False:
            event.stop()
            event.prevent_default()
            await self.run_action(bindings[0].action)
            return
        await super()._on_key(event)
