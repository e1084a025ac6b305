"""The documentation a user reads stays true to the code."""

from __future__ import annotations

import re
from pathlib import Path

from chatsphere.config import Settings
from chatsphere.errors import ErrorCode
from chatsphere.protocol.closecodes import CloseCode
from chatsphere.protocol.frames import FRAME_MODELS

ROOT = Path(__file__).resolve().parents[2]


def test_env_example_lists_every_setting_with_its_default() -> None:
    text = (ROOT / ".env.example").read_text()
    listed = dict(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=(.*)$", text, re.MULTILINE))
    for name, field in Settings.model_fields.items():
        key = name.upper()
        assert key in listed, f"{key} missing from .env.example"
        default = field.default
        if default is None or listed[key] == "":
            continue
        shown = default.value if hasattr(default, "value") else default
        if isinstance(shown, bool):
            shown = str(shown).lower()
        assert listed[key] == str(shown), f"{key}: .env.example says {listed[key]}, code {shown}"


def test_protocol_doc_covers_every_frame_error_code_and_close_code() -> None:
    text = (ROOT / "docs" / "protocol.md").read_text()
    for frame in FRAME_MODELS:
        assert f"`{frame}`" in text, f"frame {frame} undocumented"
    for code in ErrorCode:
        assert f"`{code.value}`" in text, f"error code {code.value} undocumented"
    for close in CloseCode:
        assert str(close.value) in text, f"close code {close.value} undocumented"


def test_readme_quick_start_is_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert "make run" in text and "make test" in text
