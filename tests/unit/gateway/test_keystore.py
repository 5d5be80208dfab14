"""Keys and accounts (SPEC §1.4): hashed at rest, reloaded without a restart, managed by the CLI."""

from __future__ import annotations


import pytest

from eventpipe.settings import Settings
from ingest_gateway.__main__ import main
from ingest_gateway.keystore import KeyStore, KeyStoreError, create_key, read_entries, revoke_key


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_keys_are_stored_hashed(tmp_path) -> None:
    path = tmp_path / "keys.json"
    key, entry = create_key(path, "acme")
    text = path.read_text()
    assert key not in text and entry.sha256 in text
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert KeyStore(path).account_for(key) == "acme"


def test_unknown_missing_and_revoked_keys_have_no_account(tmp_path) -> None:
    path = tmp_path / "keys.json"
    key, entry = create_key(path, "acme")
    store = KeyStore(path)
    assert store.account_for(None) is None and store.account_for("") is None
    assert store.account_for(key + "x") is None and store.account_for("\ud800") is None
    revoke_key(path, entry.id)
    store.reload()
    assert store.account_for(key) is None


def test_the_store_reloads_when_the_file_changes(tmp_path) -> None:
    path = tmp_path / "keys.json"
    clock = Clock()
    store = KeyStore(path, check_interval_s=1.0, clock=clock)
    key, entry = create_key(path, "acme")
    clock.now = 2.0
    assert store.account_for(key) == "acme"
    revoke_key(path, entry.id)
    clock.now = 2.5  # within the check interval: not yet looked at
    assert store.account_for(key) == "acme"
    clock.now = 4.0
    assert store.account_for(key) is None


def test_a_broken_file_keeps_the_previous_keys(tmp_path) -> None:
    path = tmp_path / "keys.json"
    key, _ = create_key(path, "acme")
    store = KeyStore(path)
    path.write_text("{ half-written")
    store.reload()
    assert store.account_for(key) == "acme"
    with pytest.raises(KeyStoreError):
        read_entries(path)


def test_account_names_are_checked(tmp_path) -> None:
    with pytest.raises(KeyStoreError):
        create_key(tmp_path / "keys.json", "bad name")
    with pytest.raises(KeyStoreError):
        revoke_key(tmp_path / "keys.json", "k_nope")


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    monkeypatch.setenv("EVENTPIPE_HOME", str(tmp_path))
    monkeypatch.delenv("EVENTPIPE_KEYS_FILE", raising=False)
    return Settings.from_env()


def test_cli_create_list_revoke(cli_env, capsys) -> None:
    assert main(["keys", "create", "--account", "acme"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("ep_") and KeyStore(cli_env.keys_path).account_for(key) == "acme"
    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert "acme" in listing and "active" in listing and key not in listing
    key_id = listing.split("\t")[0]
    assert main(["keys", "revoke", key_id]) == 0
    assert KeyStore(cli_env.keys_path).account_for(key) is None
    assert main(["keys", "revoke", "k_missing"]) == 1


def test_cli_ensure_demo_creates_once(cli_env, tmp_path) -> None:
    target = tmp_path / "local" / "demo_api_key"
    assert main(["keys", "ensure-demo", str(target)]) == 0
    key = target.read_text().strip()
    assert KeyStore(cli_env.keys_path).account_for(key) == "demo"
    assert main(["keys", "ensure-demo", str(target)]) == 0
    assert target.read_text().strip() == key
    assert len(read_entries(cli_env.keys_path)) == 1
    target.unlink()  # the key file lost: a new key is made (the old one cannot be recovered from its hash)
    assert main(["keys", "ensure-demo", str(target)]) == 0
    assert KeyStore(cli_env.keys_path).account_for(target.read_text().strip()) == "demo"
