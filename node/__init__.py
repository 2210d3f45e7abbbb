"""tongban's node: one service hall's own work.

Configuration and home folder (`config`, `home`), storage and migrations (`storage`), the
running node (`runtime`), the local API for clerks and operators (`api`), the `tongban` command
(`cli`), logs with personal data masked (`logs`, `privacy`) and the demo federation (`demo`).
"""

__version__ = "0.1.0"
