"""cityshare: residents earn smart credit points by sharing, and spend them in the city."""

from cityshare.ledger.model import (
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    Ledger,
    NewAccount,
    Transfer,
    TransferFlags,
)

__version__ = "0.1.0"

__all__ = [
    "AccountFlags",
    "CreateAccountResult",
    "CreateTransferResult",
    "Ledger",
    "NewAccount",
    "Transfer",
    "TransferFlags",
    "__version__",
]
