"""Publishing Worker App installers, picking the latest, serving it and judging a worker's app version."""

import hashlib
from datetime import datetime, timezone

import pytest

from webapp.extensions import db
from webapp.models import AppRelease, StoredFile
from webapp import web
from webapp.services import Conflict, NotFound, ServiceError, releases, storage


def fake_installer(tmp_path, version="0.1.0", body=b"installer bytes", name=None):
    path = tmp_path / (name or f"PictorWorkerSetup-{version}.exe")
    path.write_bytes(b"MZ" + body)
    return path


def test_publish_stores_the_file_and_records_the_release(ctx, tmp_path):
    path = fake_installer(tmp_path, "1.2.3")
    release = releases.publish(path)

    data = path.read_bytes()
    assert (release.version, release.platform, release.filename) == ("1.2.3", "windows", "PictorWorkerSetup-1.2.3.exe")
    assert release.sha256 == hashlib.sha256(data).hexdigest() and release.size == len(data)
    assert storage.path_for(release.sha256).read_bytes() == data
    assert db.session.get(StoredFile, release.sha256).size == len(data)
    db.session.expire_all()
    assert db.session.get(AppRelease, release.id).version == "1.2.3"  # committed


def test_publishing_the_same_file_again_changes_nothing(ctx, tmp_path):
    path = fake_installer(tmp_path)
    first = releases.publish(path)
    again = releases.publish(path)
    assert again.id == first.id
    assert db.session.query(AppRelease).count() == 1


def test_a_different_file_under_a_published_version_is_refused(ctx, tmp_path):
    releases.publish(fake_installer(tmp_path, body=b"first build"))
    (tmp_path / "rebuilt").mkdir()
    other = fake_installer(tmp_path / "rebuilt", body=b"second build")
    with pytest.raises(Conflict) as exc:
        releases.publish(other)
    assert exc.value.status == 409 and "0.1.0" in exc.value.message
    assert db.session.query(AppRelease).count() == 1
    assert not storage.path_for(hashlib.sha256(other.read_bytes()).hexdigest()).exists()


def test_version_comes_from_the_name_or_must_be_given(ctx, tmp_path):
    odd = fake_installer(tmp_path, name="setup.exe")
    with pytest.raises(ServiceError) as exc:
        releases.publish(odd)
    assert exc.value.code == "bad_version"
    assert releases.publish(odd, version="2.0.0").filename == "PictorWorkerSetup-2.0.0.exe"


def test_only_windows_programs_are_published(ctx, tmp_path):
    path = tmp_path / "PictorWorkerSetup-0.1.0.exe"
    path.write_bytes(b"#!/bin/sh\necho not an installer\n")
    with pytest.raises(ServiceError) as exc:
        releases.publish(path)
    assert exc.value.code == "not_an_installer"
    assert db.session.query(AppRelease).count() == 0


def test_latest_release_is_the_highest_version_not_the_newest_row(ctx, tmp_path, clock):
    assert releases.latest_release() is None and releases.latest_version() is None
    clock.set(datetime(2026, 1, 1, tzinfo=timezone.utc))
    releases.publish(fake_installer(tmp_path, "0.10.0", body=b"a"))
    clock.set(datetime(2026, 2, 1, tzinfo=timezone.utc))
    releases.publish(fake_installer(tmp_path, "0.9.2", body=b"b"))
    releases.publish(fake_installer(tmp_path, "0.10.0rc1", body=b"c"))
    assert releases.latest_version() == "0.10.0"
    assert releases.latest_release(platform="linux") is None


@pytest.mark.parametrize("older, newer", [("0.9.2", "0.10.0"), ("1.0.0rc1", "1.0.0"), ("1.0", "1.0.1"),
                                          ("1.9", "2"), ("1.0.0", "1.0.0+local")])
def test_version_order(older, newer):
    assert releases.version_key(older) < releases.version_key(newer)
    assert releases.version_key("1.0") == releases.version_key("1.0.0")


def test_is_current_compares_with_the_latest_release(ctx, tmp_path):
    assert releases.is_current("0.1.0") is None  # nothing published: cannot tell
    releases.publish(fake_installer(tmp_path, "0.2.0"))
    assert releases.is_current("0.2.0") is True
    assert releases.is_current("0.3.0") is True
    assert releases.is_current("0.1.9") is False
    assert releases.is_current(None) is None


def test_installer_download_sends_the_installer_with_its_name_and_hash(app, tmp_path):
    with app.app_context():
        release = releases.publish(fake_installer(tmp_path, "0.4.0", body=b"x" * 5000))
        sha = release.sha256
    with app.test_request_context("/download/windows"):
        release = releases.latest_release()
        response = web.installer_download(release)
        response.direct_passthrough = False
        assert response.status_code == 200
        assert response.get_data() == b"MZ" + b"x" * 5000
        assert "attachment" in response.headers["Content-Disposition"]
        assert "PictorWorkerSetup-0.4.0.exe" in response.headers["Content-Disposition"]
        assert response.headers["X-Checksum-SHA256"] == sha
        assert response.get_etag()[0] == sha
    with app.test_request_context("/download/windows", headers={"If-None-Match": f'"{sha}"'}):
        response = web.installer_download(releases.latest_release())
        assert response.status_code == 304


def test_download_of_a_lost_file_is_a_404_not_a_crash(app, tmp_path):
    with app.app_context():
        release = releases.publish(fake_installer(tmp_path))
        storage.delete_blob(release.sha256)
    with app.test_request_context("/download/windows"):
        with pytest.raises(NotFound):
            web.installer_download(releases.latest_release())


def test_publish_installer_command(app, tmp_path):
    from webapp.cli import publish_installer
    path = fake_installer(tmp_path, "3.1.4")
    result = app.test_cli_runner().invoke(publish_installer, [str(path)])
    assert result.exit_code == 0, result.output
    assert "3.1.4" in result.output and hashlib.sha256(path.read_bytes()).hexdigest() in result.output
    with app.app_context():
        assert releases.latest_version() == "3.1.4"
    bad = fake_installer(tmp_path, name="installer.exe")
    result = app.test_cli_runner().invoke(publish_installer, [str(bad)])
    assert result.exit_code != 0 and "version" in result.output


# --- the portal's address stamped on each download ----------------------------------------------------

def test_the_download_carries_this_portals_address_and_its_own_hash(app, tmp_path):
    from tray_client import portal_stamp
    with app.app_context():
        release = releases.publish(fake_installer(tmp_path, "0.5.0", body=b"y" * 3000))
        built = release.sha256
    client = app.test_client()
    response = client.get("/download/windows", base_url="https://portal.example.com")
    data = response.get_data()
    assert response.status_code == 200 and data.startswith(b"MZ" + b"y" * 3000)
    assert int(response.headers["Content-Length"]) == len(data)
    sha = hashlib.sha256(data).hexdigest()
    assert response.headers["X-Checksum-SHA256"] == sha != built and response.get_etag()[0] == sha
    assert "private" in response.headers["Cache-Control"]  # another host name stamps other bytes
    downloaded = tmp_path / "downloaded.exe"
    downloaded.write_bytes(data)
    assert portal_stamp.read_stamp(downloaded) == "https://portal.example.com"
    again = client.get("/download/windows", base_url="https://portal.example.com", headers={"If-None-Match": f'"{sha}"'})
    assert again.status_code == 304
    page = client.get("/download", base_url="https://portal.example.com").get_data(as_text=True)
    assert sha in page and built in page and f"{len(data) / 1048576:.1f} MB" in page
    assert "asks only for the pairing code" in page


def test_the_configured_server_url_is_stamped_not_the_host_header(app, tmp_path):
    from tray_client import portal_stamp
    with app.app_context():
        releases.publish(fake_installer(tmp_path, "0.5.1"))
    app.config["SERVER_URL"] = "https://grid.example.org"
    path = tmp_path / "got.exe"
    path.write_bytes(app.test_client().get("/download/windows", headers={"Host": "evil.example"}).get_data())
    assert portal_stamp.read_stamp(path) == "https://grid.example.org"


def test_an_address_the_app_would_refuse_is_not_stamped(app, tmp_path):
    with app.app_context():
        release = releases.publish(fake_installer(tmp_path, "0.5.2", body=b"plain"))
        sha = release.sha256
    app.config["SERVER_URL"] = "https://user:secret@grid.example.org"
    response = app.test_client().get("/download/windows")
    assert response.get_data() == b"MZplain" and response.headers["X-Checksum-SHA256"] == sha
    assert releases.download_stamp("https://grid.example.org?x=1") == b""


@pytest.mark.parametrize("ua, bitness", [
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36", "64"),
    ("Mozilla/5.0 (Windows NT 10.0; WOW64; rv:115.0) Gecko/20100101 Firefox/115.0", "64"),
    ("Mozilla/5.0 (Windows NT 10.0; rv:115.0) Gecko/20100101 Firefox/115.0", "32"),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130.0", None),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) Safari/605.1.15", None),
    (None, None),
])
def test_windows_bitness_from_the_user_agent(ua, bitness):
    assert releases.windows_bitness(ua) == bitness


def test_download_page_marks_the_build_for_this_pc_and_says_what_is_supported(client):
    html = client.get("/download", headers={"User-Agent": "Mozilla/5.0 (Windows NT 10.0; rv:115.0) Firefox/115.0"}
                      ).get_data(as_text=True)
    assert 'data-bitness="32"' in html and "Windows 11 and Windows 10, 64-bit" in html
    assert "Windows 7 and 8 are not supported" in html and "3.8" in html
    assert 'data-build="32"' in html and "Not available yet" in html
