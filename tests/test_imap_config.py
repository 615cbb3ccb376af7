"""`partnercheck imap` accounts and passwords, without a server: config sections, the
options that override them, and the three ways to give a password."""

from __future__ import annotations

import pytest

from partnercheck.running.imap import (
    Account,
    ImapError,
    account_from_config,
    check_account,
    read_password,
)


def test_one_account_is_taken_without_naming_it():
    account = account_from_config({"imap": {"work": {"host": "imap.example.org", "user": "sam", "port": 1993,
                                                     "folders": "INBOX", "keywords": False}}}, None)
    assert (account.name, account.host, account.port, account.folders, account.keywords) == \
        ("work", "imap.example.org", 1993, ["INBOX"], {})
    assert account.identity == "sam@imap.example.org:1993"


def test_several_accounts_need_a_name_and_unknown_keys_are_refused():
    config = {"imap": {"work": {"host": "a"}, "home": {"host": "b"}}}
    with pytest.raises(ImapError, match="several imap accounts .*--account"):
        account_from_config(config, None)
    assert account_from_config(config, "home").host == "b"
    with pytest.raises(ImapError, match=r"no \[imap.play\] section \(accounts: home, work\)"):
        account_from_config(config, "play")
    with pytest.raises(ImapError, match="unknown key.*password"):
        account_from_config({"imap": {"work": {"password": "hunter2"}}}, "work")
    # keys straight under [imap] belong to no account: they had been passed over without a word
    with pytest.raises(ImapError, match=r"\[imap\] holds host, timeout outside an account"):
        account_from_config({"imap": {"host": "imap.example.org", "timeout": 5}}, None)
    with pytest.raises(ImapError, match="not a valid IMAP keyword"):
        account_from_config({"imap": {"work": {"keywords": {"pitch": "\\Seen"}}}}, "work")
    # the README's own example: any verdict may have a keyword of the user's choosing
    chosen = account_from_config({"imap": {"work": {"keywords": {"pitch": "Pitch", "unsure": "$Later"}}}}, "work")
    assert chosen.keywords == {"pitch": "Pitch", "unsure": "$Later"}
    with pytest.raises(ImapError, match="table of verdict"):
        account_from_config({"imap": {"work": {"keywords": {"spam": "$Spam"}}}}, "work")
    with pytest.raises(ImapError, match="not a valid IMAP keyword"):  # IMAP keywords are ASCII atoms
        account_from_config({"imap": {"work": {"keywords": {"pitch": "Verkäufer"}}}}, "work")


def test_settings_that_cannot_work_are_refused_before_connecting():
    with pytest.raises(ImapError, match="no IMAP server"):
        check_account(Account(user="sam"))
    with pytest.raises(ImapError, match="both a folder to label and the pitch"):
        check_account(Account(host="h", user="sam", pitch_folder="INBOX"))
    with pytest.raises(ImapError, match="both a folder to label and the pitch"):  # INBOX in any case
        check_account(Account(host="h", user="sam", pitch_folder="inbox"))
    with pytest.raises(ImapError, match="nothing to do"):
        check_account(Account(host="h", user="sam", keywords={}))
    with pytest.raises(ImapError, match="both the pitch folder and the partnership folder"):
        check_account(Account(host="h", user="sam", pitch_folder="Sorted", partnership_folder="Sorted"))


def test_inbox_in_any_letter_case_is_read_once_and_remembered_as_before(tmp_path):
    """`-f inbox -f INBOX` read the inbox twice; `-f inbox` and `-f INBOX` on two days each
    read it whole (RFC 3501: INBOX is INBOX in any case)."""
    from partnercheck.running.imap_state import ImapState

    account = Account(host="h", user="sam", folders=["inbox", "INBOX", "Work"])
    check_account(account)
    assert account.folders == ["INBOX", "Work"]
    path = str(tmp_path / "imap.json")
    before = ImapState(path, "sam@h:993")
    before.set_folder("inbox", 7, 120)  # saved by a run told `-f inbox`
    before.save()
    assert ImapState(path, "sam@h:993").folder("INBOX") == (7, 120)


def test_passwords_from_a_file_a_command_or_the_environment(tmp_path, monkeypatch):
    secret = tmp_path / "pass"
    secret.write_text("s3cret word\nsecond line\n")
    assert read_password(Account(password_file=str(secret)), prompt=False) == "s3cret word"
    assert read_password(Account(password_command="printf 'from cmd\\r\\nmore'"), prompt=False) == "from cmd"
    monkeypatch.setenv("MY_IMAP_PW", "from env")
    assert read_password(Account(password_env="MY_IMAP_PW"), prompt=False) == "from env"
    with pytest.raises(ImapError, match=r"\$UNSET_PW \(password_env\) is not set"):
        read_password(Account(password_env="UNSET_PW"), prompt=False)
    with pytest.raises(ImapError, match="password_command failed \\(exit 2\\): nope"):
        read_password(Account(password_command="echo nope >&2; exit 2"), prompt=False)
    with pytest.raises(ImapError, match="cannot read the password file"):
        read_password(Account(password_file=str(tmp_path / "missing")), prompt=False)
    monkeypatch.delenv("PARTNERCHECK_IMAP_PASSWORD", raising=False)
    with pytest.raises(ImapError, match="no password: set password_file, password_command or password_env"):
        read_password(Account(), prompt=False)


def test_a_state_file_with_an_unknown_shape_of_pending_moves_is_read(tmp_path):
    import json

    from partnercheck.running.imap_state import ImapState

    path = tmp_path / "imap.json"
    path.write_text(json.dumps({"version": 1, "accounts": {"me": {"folders": {}, "moved": [], "unmoved": ["ab12"]}}}))
    state = ImapState(str(path), "me")
    assert state.unmoved("INBOX", 1) == set()
    state.set_unmoved("INBOX", 1, [5], pending=True)
    assert state.unmoved("INBOX", 1) == {5}


@pytest.mark.parametrize("accounts", [[], {"me": []}, {"me": {"folders": []}}, {"me": {"moved": {}}},
                                      {"me": {"folders": {"INBOX": {"uidvalidity": "7", "last_uid": 3}}}},
                                      {"me": {"folders": {"INBOX": {"uidvalidity": 7}}}}])
def test_a_state_file_of_another_shape_is_one_clear_line(tmp_path, accounts):
    import json

    from partnercheck.running.imap_state import ImapState, StateError

    path = tmp_path / "imap.json"
    path.write_text(json.dumps({"version": 1, "accounts": accounts}))
    with pytest.raises(StateError, match="not a partnercheck imap state file; move it away"):
        ImapState(str(path), "me").folder("INBOX")


def test_two_accounts_saving_one_state_file_keep_each_others_entries(tmp_path):
    """Two runs at once (a --watch per account) share the default state file; each one's save
    must keep what the other saved since it read the file."""
    from partnercheck.running.imap_state import ImapState

    path = str(tmp_path / "imap.json")
    work, home = ImapState(path, "sam@work:993"), ImapState(path, "sam@home:993")
    work.set_folder("INBOX", 7, 120)
    work.add_moved(["d1"])
    work.save()
    home.set_folder("INBOX", 9, 40)
    home.save()
    work.set_folder("INBOX", 7, 130)
    work.save()
    assert ImapState(path, "sam@work:993").folder("INBOX") == (7, 130)
    assert ImapState(path, "sam@work:993").moved("d1")
    assert ImapState(path, "sam@home:993").folder("INBOX") == (9, 40)


def test_two_runs_for_one_account_keep_the_messages_each_moved(tmp_path):
    """A cron run beside a --watch: a message either one moved to the pitch folder is still
    recognised when the user moves it back."""
    from partnercheck.running.imap_state import ImapState

    path = str(tmp_path / "imap.json")
    cron, watch = ImapState(path, "sam@work:993"), ImapState(path, "sam@work:993")
    cron.add_moved(["d1"])
    cron.save()
    watch.add_moved(["d2"])
    watch.save()
    assert watch.moved("d1")
    again = ImapState(path, "sam@work:993")
    assert again.moved("d1") and again.moved("d2")


def test_one_run_at_a_time_works_on_an_account(tmp_path):
    """A cron run beside a --watch of the same account is refused in one line, while the
    --watch runs; another account, or the same one once the first run ends, is not."""
    from partnercheck.running.imap_state import ImapState, StateError

    path = str(tmp_path / "state" / "imap.json")
    watch = ImapState(path, "sam@work:993")
    with watch.running():
        with pytest.raises(StateError, match="another partnercheck imap run is working on this account"):
            with ImapState(path, "sam@work:993").running():
                pass
        with ImapState(path, "sam@home:993").running():
            pass
    with ImapState(path, "sam@work:993").running():
        pass


def test_a_run_that_starts_as_another_ends_goes_on_from_where_that_one_got_to(tmp_path):
    """A cron run reads the state file, then asks for its password while a --watch saves and
    ends: once it has the account, it works from what the --watch saved, not from what it
    read before (it would fetch and judge that mail again, and save its older idea of it)."""
    from partnercheck.running.imap_state import ImapState

    path = str(tmp_path / "imap.json")
    watch, cron = ImapState(path, "sam@work:993"), ImapState(path, "sam@work:993")
    with watch.running():
        watch.set_folder("INBOX", 7, 130)
        watch.add_moved(["d1"])
        watch.save()
    with cron.running():
        assert cron.folder("INBOX") == (7, 130) and cron.moved("d1")
        cron.save()
    assert ImapState(path, "sam@work:993").folder("INBOX") == (7, 130)


@pytest.mark.parametrize("key, value, said", [
    ("learn", "false", "learn must be true or false"),  # bool("false") is True: learning would stay on
    ("port", "imaps", "port must be a port number"),
    ("port", "99999", "port must be a port number"),
    ("port", 0, "port must be a port number"),
    ("port", True, "port must be a port number"),
    ("timeout", "x", "timeout must be a number of seconds"),
    ("timeout", -1, "timeout must be a number of seconds"),
    ("host", 5, "host must be a string in quotes"),
])
def test_a_value_of_the_wrong_kind_is_refused_naming_the_key(key, value, said):
    with pytest.raises(ImapError, match=rf"\[imap.work\] {said}"):
        account_from_config({"imap": {"work": {key: value}}}, "work")


def test_values_of_the_right_kind_are_taken():
    account = account_from_config({"imap": {"work": {"port": 1993, "learn": False, "timeout": 2.5,
                                                     "ca_file": "~/ca.pem"}}}, "work")
    assert (account.port, account.learn, account.timeout) == (1993, False, 2.5)
    assert not account.ca_file.startswith("~")
    quoted = account_from_config({"imap": {"work": {"port": "993", "timeout": "30"}}}, "work")
    assert (quoted.port, quoted.timeout) == (993, 30.0)  # as earlier versions read them
