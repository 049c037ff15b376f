"""The HTML front in a real browser: headless Chromium driven by selenium.

Each app (FastAPI, and Django's ASGI application: the same page) runs as a real server process (``example_servers.serve``); the
browser signs in by the link read from the server's console, enrols TOTP with the
secret shown next to the QR code (the code computed with pyotp, as a phone would),
signs out, signs in again with a code, and revokes another device. Needs Debian's
``chromium`` and ``chromium-driver`` (``scripts/test`` installs them when missing).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyotp
import pytest
from example_servers import Server, serve
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from authstore.contracts.testing import unavailable

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1000,1200",
]
SCREENSHOTS = os.environ.get("AUTHSTORE_SCREENSHOTS")
"""A folder: the enrolment page's screenshot is copied there (to look at it)."""


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[WebDriver]:
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        unavailable(f"{CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: WebDriver, css: str, text: str | None = None) -> str:
    """The text of the first visible element matching ``css`` (containing ``text``)."""

    def found(d: WebDriver) -> str | bool:
        for element in d.find_elements(By.CSS_SELECTOR, css):
            if element.is_displayed() and (text is None or text in element.text):
                return element.text or True
        return False

    try:
        result = WebDriverWait(driver, 15).until(found)
    except Exception:
        message = driver.find_element(By.ID, "message").text
        raise AssertionError(f"no visible {css!r} with {text!r}; page says {message!r}") from None
    return result if isinstance(result, str) else ""


def type_into(driver: WebDriver, element_id: str, text: str) -> None:
    field = driver.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(text)


def click(driver: WebDriver, css: str) -> None:
    driver.find_element(By.CSS_SELECTOR, css).click()


def ask_for_link(driver: WebDriver, server: Server, email: str) -> str:
    type_into(driver, "email", email)
    click(driver, "#request-link")
    wait_for(driver, "#message", "Check your mail")
    return server.link(email)


@pytest.mark.parametrize("app", ["fastapi", "django-asgi"])
def test_sign_in_enrol_totp_code_sign_in_and_revoke_a_device(
    app: str, chromium: WebDriver, tmp_path: Path
) -> None:
    user = "browser@example.com"
    with serve(app, f"sqlite:///{tmp_path / 'auth.db'}") as server:
        chromium.get(f"{server.base_url}/")
        wait_for(chromium, "#sign-in")
        chromium.get(ask_for_link(chromium, server, user))  # the link, opened in the browser
        assert wait_for(chromium, "#whoami") == user
        assert "#token=" not in chromium.current_url  # the page dropped the token

        click(chromium, "#enrol")
        secret = wait_for(chromium, "#totp-secret")
        WebDriverWait(chromium, 10).until(
            lambda d: d.execute_script("return document.getElementById('qr').naturalWidth") > 0
        )
        screenshot = tmp_path / "enrolment.png"
        chromium.save_screenshot(str(screenshot))
        if SCREENSHOTS:
            shutil.copy(screenshot, Path(SCREENSHOTS) / f"enrolment-{app}.png")
        totp, step = pyotp.TOTP(secret), int(time.time()) // 30
        type_into(chromium, "confirm-code", totp.generate_otp(step))
        click(chromium, "#confirm")
        backup_codes = wait_for(chromium, "#backup-codes").split()
        assert len(backup_codes) == 10

        click(chromium, "#logout")
        wait_for(chromium, "#sign-in")
        chromium.get(ask_for_link(chromium, server, user))
        wait_for(chromium, "#second-factor")
        type_into(chromium, "code", totp.generate_otp(step + 1))  # the confirm spent `step`
        click(chromium, "#verify-code")
        assert wait_for(chromium, "#whoami") == user

        with httpx.Client(base_url=server.base_url, headers={"user-agent": "old phone"}) as phone:
            assert phone.post("/auth/magic-link", json={"email": user}).status_code == 202
            verify = phone.post("/auth/magic-link/verify", json={"token": token_of(server, user)})
            body = {"mfa_token": verify.json()["mfa_token"], "code": backup_codes[0]}
            assert phone.post("/auth/2fa/verify", json=body).status_code == 200
            assert phone.get("/session").status_code == 200

            chromium.refresh()  # the cookie's session: devices listed again, now two
            wait_for(chromium, "#devices td", "old phone")
            rows = chromium.find_elements(By.CSS_SELECTOR, "#devices tr")
            assert len(rows) == 2
            click(chromium, "#devices button.revoke")
            wait_for(chromium, "#message", "Device signed out")
            WebDriverWait(chromium, 10).until(
                lambda d: len(d.find_elements(By.CSS_SELECTOR, "#devices tr")) == 1
            )
            assert phone.get("/session").status_code == 401
    assert "Traceback" not in server.output(), server.output()


def token_of(server: Server, email: str) -> str:
    return server.link(email).partition("#token=")[2]
