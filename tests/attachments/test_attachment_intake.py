"""Taking files in: every file ends accepted (listed, content spooled) or refused with a reason
(listed as refused, a note, a dead letter, a copy in the quarantine folder): never dropped."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from usm_bridge.attachments import AttachmentPolicy, Intake, may_send, take_in
from usm_bridge.config import load_config
from usm_bridge.dead_letters import retry_dead_letters
from usm_bridge.model import AttachmentSource, Call
from usm_bridge.runtime import open_runtime
from usm_bridge.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SAMPLES = Path(__file__).parent / "samples"
PNG = (SAMPLES / "test.png").read_bytes()
EXE = (SAMPLES / "test.exe").read_bytes()
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def chunks(content: bytes, size: int = 4096) -> Iterator[bytes]:
    for at in range(0, len(content), size):
        yield content[at : at + size]


def take(content: bytes, tmp_path: Path, **given: object) -> Intake:
    values: dict[str, object] = {
        "name": "file", "declared_type": None, "policy": AttachmentPolicy(),
        "instance": "hr-mail", "remote_id": "<m1@example.com>/2", "spool_dir": tmp_path / "spool",
        "call_id": "call_1",
    }  # fmt: skip
    values.update(given)
    return take_in(chunks(content), **values)  # type: ignore[arg-type]


def test_an_accepted_file_is_listed_and_its_content_spooled_until_the_block_ends(
    tmp_path: Path,
) -> None:
    with take(
        PDF, tmp_path, name="../Signed form.pdf", declared_type="Application/Octet-Stream"
    ) as got:
        assert got.refusal is None and got.spooled is not None
        attachment = got.attachment
        assert attachment.name == "Signed form.pdf"
        assert attachment.media_type == "application/pdf"
        assert attachment.declared_type == "application/octet-stream"  # kept: it differs
        assert attachment.size == len(PDF)
        assert attachment.sha256 == hashlib.sha256(PDF).hexdigest()
        assert attachment.source == AttachmentSource(
            instance="hr-mail", remote_id="<m1@example.com>/2"
        )
        assert attachment.origin == "hr-mail" and attachment.refused is None
        assert b"".join(got.spooled.chunks()) == PDF
    assert list((tmp_path / "spool").iterdir()) == []


def test_a_copy_the_bridge_wrote_keeps_its_first_origin(tmp_path: Path) -> None:
    with take(PNG, tmp_path, name="shot.png", instance="fac-jira", remote_id="10001",
              origin="hr-mail", declared_type="image/png") as got:  # fmt: skip
        assert got.attachment.origin == "hr-mail"
        assert got.attachment.declared_type is None  # the same as sniffed: nothing to keep
        assert got.attachment.identity == (hashlib.sha256(PNG).hexdigest(), "shot.png")


def test_a_disguised_program_is_refused_noted_kept_in_quarantine_and_not_spooled(
    tmp_path: Path,
) -> None:
    quarantine = tmp_path / "quarantine"
    got = take(
        EXE, tmp_path, name="holiday.png", declared_type="image/png", quarantine_dir=quarantine
    )
    assert got.spooled is None and got.refusal is not None
    sniffed = got.attachment.media_type
    assert sniffed in {"application/vnd.microsoft.portable-executable", "application/x-dosexec"}
    reason = f"holiday.png: its content is {sniffed}, which is refused"
    assert got.attachment.refused == reason and got.attachment.declared_type == "image/png"
    assert got.refusal.note() == f"An attachment was not read from hr-mail: {reason}."
    digest = hashlib.sha256(EXE).hexdigest()
    kept = quarantine / f"{digest}-holiday.png"
    assert kept.read_bytes() == EXE
    assert kept.stat().st_mode & 0o777 == 0o600 and quarantine.stat().st_mode & 0o777 == 0o700
    sidecar = json.loads((quarantine / f"{digest}-holiday.png.json").read_text())
    assert sidecar["reason"] == reason and sidecar["call_id"] == "call_1"
    assert sidecar["attachment"]["sha256"] == digest
    assert sorted(p.name for p in quarantine.iterdir()) == [kept.name, kept.name + ".json"]
    assert list((tmp_path / "spool").iterdir()) == []
    # The same file refused again is kept once.
    take(EXE, tmp_path, name="holiday.png", quarantine_dir=quarantine)
    assert len(list(quarantine.iterdir())) == 2


def test_a_file_past_the_cap_is_refused_after_one_chunk_too_many_with_its_sidecar_only(
    tmp_path: Path,
) -> None:
    quarantine = tmp_path / "q"
    taken: list[int] = []

    def endless() -> Iterator[bytes]:
        while True:
            taken.append(1)
            yield b"\x00" * 65536

    got = take_in(
        endless(), name="dump.bin", declared_type=None, policy=AttachmentPolicy(max_size="1MiB"),
        instance="fac-jira", remote_id="10002", spool_dir=tmp_path / "spool",
        quarantine_dir=quarantine,
    )  # fmt: skip
    assert len(taken) == 17  # 16 chunks are the cap, the 17th passes it
    assert got.refusal is not None and got.attachment.sha256 is None
    assert got.attachment.refused == "dump.bin: larger than the 1 MiB this instance takes"
    assert got.attachment.size == 17 * 65536
    key = hashlib.sha256(b"fac-jira/10002").hexdigest()[:57]
    assert [p.name for p in quarantine.iterdir()] == [f"unread-{key}-dump.bin.json"]
    assert got.attachment.media_type == "application/octet-stream"  # never read whole
    assert list((tmp_path / "spool").iterdir()) == []


def test_with_travel_off_nothing_is_read(tmp_path: Path) -> None:
    read: list[bytes] = []

    def source() -> Iterator[bytes]:
        read.append(b"x")
        yield b"x"

    got = take_in(
        source(), name="a.pdf", declared_type="application/pdf",
        policy=AttachmentPolicy(travel=False), instance="it-snow", remote_id="abc",
        spool_dir=tmp_path,
    )  # fmt: skip
    assert read == []
    assert got.attachment.refused == "a.pdf: attachments do not travel for this instance"
    # Never read: of unknown type, the sender's word kept as evidence only.
    assert got.attachment.media_type == "application/octet-stream"
    assert got.attachment.declared_type == "application/pdf"


def test_an_unwritable_quarantine_still_refuses_and_says_why(tmp_path: Path) -> None:
    blocked = tmp_path / "quarantine"
    blocked.write_text("a file where the folder should be")
    got = take(EXE, tmp_path, name="x.exe", quarantine_dir=blocked)
    assert got.refusal is not None and got.quarantine_problem is not None
    assert str(blocked) in got.quarantine_problem
    # Its note and dead letter (made of the refusal) say the quarantine copy failed, and why.
    assert got.attachment.refused == (
        f"x.exe: files ending in .exe are refused; {got.quarantine_problem}"
    )
    assert got.quarantine_problem in got.refusal.note()
    assert got.quarantine_problem in got.refusal.dead_letter()["reason"]
    assert list((tmp_path / "spool").iterdir()) == []


def test_every_file_fed_in_has_one_outcome(tmp_path: Path) -> None:
    files = [
        ("form.pdf", PDF), ("shot.png", PNG), ("setup.exe", EXE), ("renamed.png", EXE),
        ("run.sh", b"#!/bin/sh\necho hi\n"), ("notes.txt", b"plain words\n"),
        ("big.bin", b"\x00" * 70_000), ("", b"no name\n"),
    ]  # fmt: skip
    policy = AttachmentPolicy(max_size="64KiB")
    outcomes = [take(content, tmp_path, name=name, policy=policy) for name, content in files]
    assert len(outcomes) == len(files)
    accepted = [o.attachment.name for o in outcomes if o.refusal is None]
    refused = {o.attachment.name: o.attachment.refused for o in outcomes if o.refusal is not None}
    assert accepted == ["form.pdf", "shot.png", "notes.txt", "attachment"]
    assert sorted(refused) == ["big.bin", "renamed.png", "run.sh", "setup.exe"]
    assert all(reason for reason in refused.values())


def test_a_refusal_is_a_dead_letter_counted_once_per_file_and_kept_open_by_a_retry_it_fails(
    tmp_path: Path, store_url: str
) -> None:
    got = take(EXE, tmp_path, name="setup.exe")
    assert got.refusal is not None
    with Store.open(store_url) as store:
        with store.begin() as tx:
            # The call the file was read with is stored in the same unit of work.
            tx.upsert_call(
                Call(id="call_1", unit="hr", title="t", created=T0, updated=T0,
                     attachments=[got.attachment])
            )  # fmt: skip
            first = tx.add_dead_letter(**got.refusal.dead_letter())
            again = tx.add_dead_letter(**got.refusal.dead_letter())
        with store.begin(readonly=True) as tx:
            letters = tx.list_dead_letters(instance="hr-mail")
    assert [letter.id for letter in letters] == [first.id] == [again.id]
    [letter] = letters
    assert letter.attempts == 2 and letter.stage.value == "map" and letter.call_id == "call_1"
    assert letter.reason == "attachment refused: setup.exe: files ending in .exe are refused"
    assert letter.subject == f"attachment:call_1:{hashlib.sha256(EXE).hexdigest()}:setup.exe"
    assert isinstance(letter.payload, dict) and letter.payload["direction"] == "read"
    config = tmp_path / "bridge.toml"
    (tmp_path / "m.yaml").write_text(
        "version: 1\ntool: email\nfields:\n  title: {path: subject}\n", encoding="utf-8"
    )
    config.write_text(
        f'[store]\nurl = "{store_url}"\n\n[units.hr]\n\n'
        '[instances.hr-mail]\nunit = "hr"\nkind = "email"\nmapping = "m.yaml"\n',
        encoding="utf-8",
    )
    with open_runtime(load_config(config)) as runtime:
        retried = retry_dead_letters(runtime.engine)
    # A file refused where it was read is read again by a retry (under the policy now); this
    # call has no record in hr-mail to read it from, so the retry fails and says so.
    [(failed_id, why)] = retried.failed
    assert failed_id == first.id and "call call_1 has no record in hr-mail" in why
    assert retried.resolved == retried.skipped == []
    with Store.open(store_url) as store, store.begin(readonly=True) as tx:
        [still] = tx.list_dead_letters(instance="hr-mail")
    assert still.status.value == "open" and "no record in hr-mail" in still.reason


@pytest.mark.parametrize("declared", ["image/png", None])
def test_the_declared_type_never_decides_acceptance(tmp_path: Path, declared: str | None) -> None:
    got = take(EXE, tmp_path, name="a.png", declared_type=declared)
    assert got.refusal is not None


def test_the_targets_policy_has_its_say_before_a_write(tmp_path: Path) -> None:
    with take(PDF, tmp_path, name="form.pdf") as got:
        form = got.attachment
    images_only = AttachmentPolicy(allow=["image/*"])
    assert may_send(AttachmentPolicy(), form, instance="fac-jira") is None
    refusal = may_send(images_only, form, instance="fac-jira", call_id="call_9")
    assert refusal is not None and refusal.direction == "write"
    reason = "form.pdf: its content is application/pdf, not one of the allowed types (image/*)"
    assert refusal.note() == f"An attachment was not sent to fac-jira: {reason}."
    letter = refusal.dead_letter()
    assert letter["stage"].value == "push" and letter["instance"] == "fac-jira"
    assert letter["call_id"] == "call_9" and refusal.attachment().sha256 == form.sha256
    refused_at_source = take(EXE, tmp_path, name="x.exe").attachment
    with pytest.raises(ValueError, match=r"x\.exe was refused where it was read"):
        may_send(AttachmentPolicy(), refused_at_source, instance="fac-jira")
