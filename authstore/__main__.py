import sys

from authstore.cli import main

sys.exit(main())
