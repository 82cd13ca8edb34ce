from dlgpu.cli.main import main

raise SystemExit(main())
