"""The digital twin: a replica of the audit log that trusts only the log's key, and a witness.

`sync` follows the primary the way a Certificate Transparency monitor follows a log:

1. pin the log's verifier key (given, or trusted on first use);
2. fetch the newest checkpoint and check the log's signature on it;
3. refuse a checkpoint smaller than the one already trusted (a rollback), and check the
   consistency proof from the trusted checkpoint to the new one: a history rewritten after the
   twin trusted it cannot be proven consistent, however well the primary recomputed its own
   hashes and re-signed its own checkpoints;
4. download the new entries, append them to the replica and recompute the root itself: it must
   equal the checkpoint's root (so entries changed in transit, or served differently from what
   the tree commits to, are caught even when the proof was right);
5. only then trust the new checkpoint — entries and checkpoint commit in one SQLite
   transaction, so a sync killed half way leaves the replica as it was and can simply rerun;
6. cosign the checkpoint (C2SP tlog-cosignature) and give the cosignature back to the primary,
   which serves it beside its own signature: clients of the log can then require that a witness
   saw the same history they are shown.

`verify` rebuilds the whole tree from the stored entries, checks it against the trusted
checkpoint, and replays the ledger from the entries alone (`twin/replay.py`).

A checkpoint refused because it contradicts the trusted one (a smaller tree, the same size with
another root, or a bigger tree not proven consistent with it) is evidence that the log showed
two histories. The twin keeps it: both signed notes, as received, in `evidence/` (one JSON file
per contradicting pair, see :func:`keep_evidence`), and `verify` re-checks and reports every
file there, and fails while any is held.

The replica is one SQLite file (`replica.db`), authoritative for what is trusted; the trusted
checkpoint is also written to `checkpoint` after each commit, for people and other tools.

The package, by seam: `replica.py` the twin's SQLite store (entries, tree edge, trusted
checkpoints), `primary.py` the HTTP reads of the primary's log API, `sync.py` the sync above,
`evidence.py` the evidence of equivocation, `witness.py` the cosigning key and the cosignature
posted back, `verify.py` the full re-check, and `replay.py` the ledger replayed from entries.
"""
