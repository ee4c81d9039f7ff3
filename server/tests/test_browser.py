"""The operator console in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`, never a downloaded one) drives the admin against a live server and a local
receiver, and saves a screenshot of each step under DATAPUSHER_TEST_ARTIFACTS (default
test-artifacts/browser/). Skipped with the reason when no browser is installed; CI installs one
(.ci/run) and fails without it."""

import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from accounts.tests.factories import AccountFactory
from destinations.tests.factories import DestinationFactory
from server.models import Delivery, Event
from server.services.ingest import TEST_EVENT
from server.tests.conftest import service_missing

ARTIFACTS = (
    Path(os.environ.get("DATAPUSHER_TEST_ARTIFACTS", settings.BASE_DIR / "test-artifacts")) / "browser"
)
PAGE_LOAD_SECONDS = 30


@pytest.fixture
def browser(caplog, monkeypatch) -> Iterator[WebDriver]:
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        service_missing("no browser: install Debian's chromium and chromium-driver to run this test")
    # The driver's own HTTP exchanges (screenshots in base64) are not this test's log.
    caplog.set_level(logging.WARNING, logger="selenium")
    caplog.set_level(logging.WARNING, logger="urllib3.connectionpool")
    # Selenium Manager must never fetch a browser or a driver: both are given, and it is offline.
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    driver.set_page_load_timeout(PAGE_LOAD_SECONDS)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def screenshot(driver: WebDriver, name: str) -> None:
    assert driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def shown(driver: WebDriver, by: str, value: str) -> WebElement:
    """The element, once the page shows it (after a click, the next page may still be loading)."""
    return WebDriverWait(driver, PAGE_LOAD_SECONDS).until(
        expected_conditions.visibility_of_element_located((by, value))
    )


def message(driver: WebDriver) -> str:
    return shown(driver, By.CSS_SELECTOR, "ul.messagelist li").text


def run_page_action(driver: WebDriver, action: str) -> None:
    """Choose `action` in an object page's "Action" select, press its Run button, and wait until
    the page it was on is gone (the action's answer, then its redirect, replace it)."""
    Select(shown(driver, By.NAME, "CHANGE_FORM-action")).select_by_value(action)
    run = driver.find_element(By.CSS_SELECTOR, "div.actions button[name='index']")
    run.click()
    WebDriverWait(driver, PAGE_LOAD_SECONDS).until(expected_conditions.staleness_of(run))


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(180)
def test_an_operator_sends_a_test_event_redelivers_it_and_reads_the_dashboard(
    live_server, browser, receiver, django_user_model
):
    """Log in from the landing page, open an account, send it a test event, open its delivery,
    redeliver it, open the dashboard: each step's page says what happened, and the receiver got
    the test event twice with the same webhook-id."""
    django_user_model.objects.create_superuser(
        username="operator", email="op@example.com", password="pw-4-test"
    )
    account = AccountFactory(account_name="Shop")
    DestinationFactory(account=account, url=f"{receiver.url}/in", http_method="POST")

    browser.get(live_server.url + "/")
    screenshot(browser, "1-landing")
    browser.find_element(By.ID, "link-admin").click()
    shown(browser, By.ID, "id_username").send_keys("operator")
    browser.find_element(By.ID, "id_password").send_keys("pw-4-test")
    browser.find_element(By.CSS_SELECTOR, "input[type='submit']").click()
    shown(browser, By.ID, "dashboard-link")
    screenshot(browser, "2-admin-index")

    browser.get(f"{live_server.url}/admin/accounts/account/")
    browser.find_element(By.CSS_SELECTOR, f"a[href='/admin/accounts/account/{account.pk}/change/']").click()
    screenshot(browser, "3-account")
    run_page_action(browser, "send_test_event")
    sent = message(browser)
    screenshot(browser, "4-test-event-sent")
    event = Event.objects.get(account=account)
    assert sent.startswith(f"Test event {str(event.event_id)[:8]}")
    assert f"POST {receiver.url}/in — succeeded, HTTP 200" in sent
    assert [(r.method, r.path, json.loads(r.body)) for r in receiver.requests] == [
        ("POST", "/in", TEST_EVENT)
    ]

    delivery = Delivery.objects.get(event=event)
    browser.get(f"{live_server.url}/admin/server/delivery/")
    browser.find_element(By.LINK_TEXT, str(delivery.delivery_id)[:8]).click()
    WebDriverWait(browser, PAGE_LOAD_SECONDS).until(
        expected_conditions.url_to_be(f"{live_server.url}/admin/server/delivery/{delivery.pk}/change/")
    )
    screenshot(browser, "5-delivery")
    run_page_action(browser, "redeliver")
    assert message(browser) == "Sent 1 of the 1 selected delivery: 1 succeeded, 0 failed."
    screenshot(browser, "6-redelivered")
    assert len(receiver.requests) == 2
    first, second = receiver.requests
    assert second.body == first.body
    assert second.headers["webhook-id"] == first.headers["webhook-id"] == str(delivery.delivery_id)

    browser.get(f"{live_server.url}/admin/")
    browser.find_element(By.ID, "dashboard-link").click()
    summary = shown(browser, By.ID, "dashboard-summary")
    screenshot(browser, "7-dashboard")
    assert summary.find_element(By.CSS_SELECTOR, "#summary-events-received td").text == "1"
    assert summary.find_element(By.CSS_SELECTOR, "#summary-deliveries-succeeded td").text == "1"
    assert browser.find_element(By.CSS_SELECTOR, "#dashboard-chart svg").is_displayed()
