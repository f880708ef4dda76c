"""`python -m tff_fedmm` behaves exactly like the `fedmm` console script."""

from tff_fedmm.cli import main

raise SystemExit(main())
