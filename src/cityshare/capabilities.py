"""The platform's capabilities, in the order their routes, CLI groups and records are wired.

Adding a capability is its package and one line here; bootstrap, the unit of work, the app, the
CLI, the scheduler and `audit verify` loop over this list (see `kernel/capability.py`).
"""

from __future__ import annotations

from cityshare.billing.capability import CAPABILITY as BILLING
from cityshare.charging.capability import CAPABILITY as CHARGING
from cityshare.community.capability import CAPABILITY as COMMUNITY
from cityshare.energy.capability import CAPABILITY as ENERGY
from cityshare.identity.capability import CAPABILITY as IDENTITY
from cityshare.kernel.capability import Capability
from cityshare.kernel.idempotency_capability import CAPABILITY as IDEMPOTENCY
from cityshare.ledger.capability import CAPABILITY as LEDGER
from cityshare.tlog.capability import CAPABILITY as AUDIT_LOG

CAPABILITIES: tuple[Capability, ...] = (
    LEDGER,
    AUDIT_LOG,
    IDEMPOTENCY,
    IDENTITY,
    ENERGY,
    COMMUNITY,
    BILLING,
    CHARGING,
)
