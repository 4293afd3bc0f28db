"""The main screen's jobs, one mixin each over :class:`~tui_quantreport.tui.main_state.MainState`."""
