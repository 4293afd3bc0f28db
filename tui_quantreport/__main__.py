"""`python -m tui_quantreport` is the same program as `tui-quantreport`."""

from tui_quantreport.cli import main

raise SystemExit(main())
