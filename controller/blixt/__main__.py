from blixt.cli import main

raise SystemExit(main())
