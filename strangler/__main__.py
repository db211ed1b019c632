import sys

from strangler.cli import main

sys.exit(main())
