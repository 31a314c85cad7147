"""The mapping's attachments policy: its keys, their errors (file, line, key), and decisions."""

from __future__ import annotations

import pytest

from usm_bridge.attachments import AttachmentPolicy, decide, parse_size
from usm_bridge.attachments.policy import DEFAULT_MAX_SIZE
from usm_bridge.errors import MappingFileError
from usm_bridge.mapping import load_mapping, loads_mapping
from usm_bridge.mapping.files import SHIPPED_MAPPINGS_DIR

BASE = """\
version: 1
tool: jira
fields:
  title: {path: fields.summary, required: true}
  created: {path: fields.created}
  updated: {path: fields.updated}
"""


def why(policy: AttachmentPolicy, name: str, media_type: str, size: int = 1) -> str | None:
    """The policy's reason for refusing the file; ``None`` when it travels."""
    decision = decide(policy, name=name, size=size, media_type=media_type)
    assert decision.accepted == (decision.reason is None)
    return decision.reason


def test_without_the_section_files_travel_up_to_25_mib_and_programs_are_refused() -> None:
    policy = loads_mapping(BASE).spec.attachments
    assert policy == AttachmentPolicy()
    assert policy.travel and policy.max_size == DEFAULT_MAX_SIZE == 25 * 2**20
    assert why(policy, "form.pdf", "application/pdf", DEFAULT_MAX_SIZE) is None
    assert [
        why(policy, "form.pdf", "application/pdf", DEFAULT_MAX_SIZE + 1),
        why(policy, "setup.exe", "text/plain"),
        why(policy, "run", "text/x-shellscript"),
    ] == [
        "form.pdf: larger than the 25 MiB this instance takes",
        "setup.exe: files ending in .exe are refused",
        "run: its content is text/x-shellscript, which is refused",
    ]


def test_the_section_is_read_with_sizes_patterns_and_extensions_normalised() -> None:
    spec = loads_mapping(
        BASE
        + "attachments:\n  max_size: 10 MB\n  allow: [Image/*, application/pdf]\n"
        + "  refuse: [image/svg+xml]\n  refuse_extensions: [DOCM, .XLSM]\n"
    ).spec.attachments
    assert spec.max_size == 10_000_000
    assert spec.allow == ["image/*", "application/pdf"]
    assert spec.refuse_extensions == [".docm", ".xlsm"]
    files = {"a.png": "image/png", "a.svg": "image/svg+xml", "Book.XLSM": "application/pdf",
             "a.txt": "text/plain"}  # fmt: skip
    assert {name: why(spec, name, media_type) for name, media_type in files.items()} == {
        "a.png": None,
        "a.svg": "a.svg: its content is image/svg+xml, which is refused",
        "Book.XLSM": "Book.XLSM: files ending in .xlsm are refused",
        "a.txt": (
            "a.txt: its content is text/plain, not one of the allowed types "
            "(image/*, application/pdf)"
        ),
    }


def test_travel_off_refuses_every_file_and_default_refusals_off_keeps_only_the_files_own() -> None:
    off = AttachmentPolicy(travel=False)
    assert (
        why(off, "a.pdf", "application/pdf") == "a.pdf: attachments do not travel for this instance"
    )
    own = AttachmentPolicy(default_refusals=False, refuse=["application/zip"])
    assert why(own, "tool.exe", "application/x-dosexec") is None
    assert why(own, "a.zip", "application/zip") is not None


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("{max_size: 10 MeB}", "key attachments.max_size: '10 MeB' is not a size"),
        ("{max_size: 0}", "key attachments.max_size: a size must be between 1 byte and 4GiB"),
        ("{max_size: 5GiB}", "key attachments.max_size: a size must be between 1 byte and 4GiB"),
        ("{max_size: true}", "key attachments.max_size: a size is a number of bytes"),
        ("{allow: [image]}", "key attachments.allow.0: 'image' is not a media type or pattern"),
        ("{refuse: ['*/*']}", "key attachments.refuse.0: '*/*' is not a media type or pattern"),
        ("{refuse_extensions: [.e x]}", "key attachments.refuse_extensions.0: '.e x' is not a"),
        ("{travle: true}", "key attachments.travle: unknown key 'travle'; did you mean 'travel'?"),
        ("{travel: maybe}", "key attachments.travel"),
        ("[image/*]", "key attachments"),
    ],
)
def test_a_bad_value_names_the_file_the_line_and_the_key(section: str, message: str) -> None:
    with pytest.raises(MappingFileError) as caught:
        loads_mapping(BASE + f"attachments: {section}\n", source="hr-jira.yaml")
    assert str(caught.value).startswith(f"hr-jira.yaml:7: {message}")


@pytest.mark.parametrize("name", sorted(p.name for p in SHIPPED_MAPPINGS_DIR.glob("*.yaml")))
def test_every_shipped_mapping_states_its_policy(name: str) -> None:
    mapping = load_mapping(SHIPPED_MAPPINGS_DIR / name)
    text = (SHIPPED_MAPPINGS_DIR / name).read_text()
    if name != "servicenow-incident-event-log.yaml":  # an event log: no files to carry
        assert "\nattachments:\n" in text
    assert mapping.spec.attachments.travel
    assert mapping.spec.attachments.max_size == 25 * 2**20


@pytest.mark.parametrize(
    ("text", "size"),
    [("1", 1), ("25MiB", 25 * 2**20), (" 10 MB ", 10**7), ("512KiB", 512 * 1024), (4096, 4096)],
)
def test_sizes(text: str | int, size: int) -> None:
    assert parse_size(text) == size
