import sys

from scaleworld.cli.main import main

sys.exit(main())
