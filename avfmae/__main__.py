import sys

from avfmae.cli import main

sys.exit(main())
