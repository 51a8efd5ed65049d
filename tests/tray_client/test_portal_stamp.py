"""The portal address stamped on a downloaded installer: written by the portal, read by the installer
step, then by the pairing form, which a config file, $PICTOR_SERVER_URL or server_url.txt overrides."""

import struct
import sys
import zlib

import pytest

from tray_client import config as config_mod
from tray_client import pairing, portal_stamp
from tray_client.portal_stamp import MAGIC, StampError, clean_url, read_stamp, trailer


def installer(tmp_path, tail=b"", name="PictorWorkerSetup-0.1.0.exe"):
    path = tmp_path / name
    path.write_bytes(b"MZ" + b"\x00" * 4000 + tail)
    return path


def test_a_stamped_installer_names_its_portal(tmp_path):
    path = installer(tmp_path, trailer("https://portal.example.com/"))
    assert read_stamp(path) == "https://portal.example.com"
    assert read_stamp(installer(tmp_path, trailer("http://127.0.0.1:5000/api/v1"))) == "http://127.0.0.1:5000"
    assert read_stamp(installer(tmp_path)) is None  # as built: no stamp, the first run asks


@pytest.mark.parametrize("url", [
    "javascript:alert(1)", "file:///C:/Windows", "ftp://portal.example", "https://user:pw@evil.example",
    "https://portal.example@evil.example", "https://portal.example/?next=evil", "https://portal.example/#x",
    "https://portal.example/a b", "https://portal.example\r\nX: y", "https://pörtal.example",
    "https://portal.example:99999", "https://-bad-.example", "https://portal.example/../x",
    "https://" + "a" * 250 + ".example", "", None, 42,
])
def test_an_address_the_app_would_not_trust_is_refused(url):
    with pytest.raises(StampError):
        clean_url(url)


def test_a_tampered_or_cut_trailer_is_refused_not_misread(tmp_path):
    good = trailer("https://portal.example.com")
    flipped = bytearray(good)
    flipped[10] ^= 0x01  # one bit changed inside the payload: the CRC no longer matches
    with pytest.raises(StampError, match="CRC"):
        read_stamp(installer(tmp_path, bytes(flipped)))
    huge = struct.pack("<II", 10**6, 0) + MAGIC  # a length reaching before the file's start
    with pytest.raises(StampError, match="length"):
        read_stamp(installer(tmp_path, huge))
    # A well-formed trailer (right CRC) around a hostile address: still refused.
    payload = b'{"server_url":"https://x.example@evil.example"}'
    forged = payload + struct.pack("<II", len(payload), zlib.crc32(payload)) + MAGIC
    with pytest.raises(StampError):
        read_stamp(installer(tmp_path, forged))
    payload = b'["https://portal.example"]'
    with pytest.raises(StampError, match="object"):
        read_stamp(installer(tmp_path, payload + struct.pack("<II", len(payload), zlib.crc32(payload)) + MAGIC))


def test_the_installer_step_writes_the_address_or_removes_a_stale_one(tmp_path, capsys):
    out = tmp_path / portal_stamp.STAMP_FILE
    assert portal_stamp.main([str(installer(tmp_path, trailer("https://portal.example.com"))), str(out)]) == 0
    assert out.read_text() == "https://portal.example.com\n"
    assert portal_stamp.main([str(installer(tmp_path)), str(out)]) == 0
    assert not out.exists()
    out.write_text("https://old.example\n")
    bad = bytearray(trailer("https://portal.example.com"))
    bad[3] ^= 0xFF
    assert portal_stamp.main([str(installer(tmp_path, bytes(bad))), str(out)]) == 0  # never fails the install
    assert not out.exists() and "CRC" in capsys.readouterr().out
    assert portal_stamp.main([]) == 2


def test_the_pairing_form_prefills_the_stamp_and_everything_else_wins(tmp_path, monkeypatch):
    folder = tmp_path / "Python"
    folder.mkdir()
    monkeypatch.setattr(sys, "executable", str(folder / "pythonw.exe"))
    monkeypatch.delenv("PICTOR_SERVER_URL", raising=False)
    cfg = config_mod.load(None, tmp_path / "data")
    assert pairing.default_server_url(cfg) == ""
    (folder / portal_stamp.STAMP_FILE).write_text("https://stamped.example\n")
    assert pairing.default_server_url(cfg) == "https://stamped.example"
    (folder / portal_stamp.STAMP_FILE).write_text("https://a@evil.example\n")  # edited by hand: checked again
    assert pairing.default_server_url(cfg) == ""
    (folder / portal_stamp.STAMP_FILE).write_text("https://stamped.example\n")
    (folder / pairing.SERVER_FILE).write_text("https://admin.example\n")
    assert pairing.default_server_url(cfg) == "https://admin.example"
    monkeypatch.setenv("PICTOR_SERVER_URL", "https://env.example")
    assert pairing.default_server_url(cfg) == "https://env.example"
    cfg.server_url = "https://configured.example"
    assert pairing.default_server_url(cfg) == "https://configured.example"
