import sys

from xent_bench.cli import main

sys.exit(main())
