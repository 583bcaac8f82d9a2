import sys

from recsys_impls.cli import main

sys.exit(main())
