from mmtok.cli import main; import sys; sys.exit(main())
