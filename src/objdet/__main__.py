from objdet.cli.main import main

raise SystemExit(main())
