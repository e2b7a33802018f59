import sys

from core.commands import main

sys.exit(main())
