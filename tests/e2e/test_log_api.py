"""The audit log over HTTP (DESIGN.md §4): a client that trusts only the log's key checks the
checkpoint, the entries and the proofs it is served."""

from __future__ import annotations

import base64

from fastapi.testclient import TestClient

from cityshare.tlog import merkle, note


def seed(client: TestClient) -> None:
    accounts = [
        {"id": 1, "ledger": "CREDIT", "code": 1},
        {"id": 10, "ledger": "CREDIT", "code": 2, "flags": ["debits_must_not_exceed_credits"]},
    ]
    assert client.post("/api/v1/accounts", json=accounts).status_code == 200
    for i in range(1, 6):
        transfer = {
            "id": i,
            "debit_account_id": 1,
            "credit_account_id": 10,
            "amount": 100 * i,
            "ledger": "CREDIT",
        }
        assert client.post("/api/v1/transfers", json=[transfer]).status_code == 200


def trusted_checkpoint(client: TestClient) -> note.Checkpoint:
    verifier = note.Verifier.parse(client.get("/api/v1/log/key").text.strip())
    response = client.get("/api/v1/log/checkpoint")
    assert response.headers["content-type"].startswith("text/plain")
    return note.Checkpoint.parse(note.open_note(response.text, verifier).text)


def test_the_empty_log_has_a_signed_checkpoint_of_the_empty_tree(client: TestClient) -> None:
    checkpoint = trusted_checkpoint(client)
    assert (checkpoint.size, checkpoint.root_hash) == (0, merkle.EMPTY_ROOT)


def test_a_client_verifies_entries_and_proofs_against_the_signed_checkpoint(
    client: TestClient,
) -> None:
    seed(client)
    checkpoint = trusted_checkpoint(client)
    assert checkpoint.size == 7  # two accounts, five transfers, one leaf each

    body = client.get("/api/v1/log/entries", params={"start": 0, "end": 100}).json()
    assert body["start"] == 0
    leaves = [base64.b64decode(e) for e in body["entries"]]
    assert len(leaves) == 7
    tree = merkle.MemoryTree()
    for leaf in leaves:
        tree.append(merkle.leaf_hash(leaf))
    assert tree.root() == checkpoint.root_hash

    for index in range(7):
        proof = client.get(
            "/api/v1/log/proof/inclusion", params={"index": index, "size": 7}
        ).json()["proof"]
        merkle.verify_inclusion(
            index,
            7,
            merkle.leaf_hash(leaves[index]),
            [base64.b64decode(p) for p in proof],
            checkpoint.root_hash,
        )
    older = client.get("/api/v1/log/checkpoints/3")
    assert older.status_code == 200
    proof = client.get("/api/v1/log/proof/consistency", params={"first": 3, "second": 7}).json()[
        "proof"
    ]
    merkle.verify_consistency(
        3, 7, tree.root(3), checkpoint.root_hash, [base64.b64decode(p) for p in proof]
    )


def test_entries_are_for_operators_and_hashes_for_everyone(client: TestClient) -> None:
    seed(client)
    anonymous = {"Authorization": ""}
    assert client.get("/api/v1/log/entries?start=0&end=2", headers=anonymous).status_code == 401
    for public in (
        "/api/v1/log/checkpoint",
        "/api/v1/log/key",
        "/api/v1/log/proof/inclusion?index=0&size=2",
    ):
        assert client.get(public, headers=anonymous).status_code == 200


def test_bad_ranges_get_a_clear_422(client: TestClient) -> None:
    seed(client)
    for url in (
        "/api/v1/log/entries?start=7&end=9",
        "/api/v1/log/entries?start=3&end=3",
        "/api/v1/log/entries?start=-1&end=3",
        "/api/v1/log/entries?start=x&end=3",
        "/api/v1/log/proof/inclusion?index=7&size=7",
        "/api/v1/log/proof/inclusion?index=0&size=99",
        "/api/v1/log/proof/consistency?first=0&second=3",
        "/api/v1/log/proof/consistency?first=5&second=3",
        f"/api/v1/log/proof/consistency?first=1&second={2**64}",
    ):
        response = client.get(url)
        assert response.status_code == 422, url
        assert response.json()["error"]["message"], url
    # Seeding committed at sizes 2, 3, … 7: each of those has its own checkpoint.
    assert client.get("/api/v1/log/checkpoints/4").status_code == 200
    assert client.get("/api/v1/log/checkpoints/99").status_code == 404
