import sys

from recsys_impls import hugepages
from recsys_impls.errors import UsageError

try:
    hugepages.reexec_if_needed()  # before any large allocation: glibc reads its tunables at start only
except UsageError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(exc.exit_code)

from recsys_impls.cli import main  # noqa: E402 - after the re-execution above

sys.exit(main())
