"""The web console with authentication on (`conveyor dev --secure`): it asks for an API
key, keeps it for the tab, and shows a reader no button that would fail; an operator's key
gets them back."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from tests.support.console import (
    Dev,
    buttons_in_main,
    chromium,
    click_button,
    console_errors,
    element,
    needs_chromium,
    running_dev,
    wait_for,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.timeout(300),
    needs_chromium,
]

REFUSED = re.compile(r"/v1/whoami - Failed to load resource: .* 401")
"""The console's first call, before a key is typed, is refused: that is how it knows."""


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    with running_dev(tmp_path_factory.mktemp("console-auth"), "--secure") as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with chromium() as driver:
        yield driver


def make_key(dev: Dev, role: str) -> str:
    with dev.http() as http:
        made = http.post("/v1/keys", json={"role": role, "description": "console test"})
        assert made.status_code == 200, made.text
        return str(made.json()["apiKey"])


def sign_in(browser: webdriver.Chrome, dev: Dev, key: str, page: str = "#/") -> None:
    if page:
        browser.get(f"{dev.url}/{page}")
    field = element(browser, "input[name=key]")
    field.send_keys(key)
    click_button(browser, "Sign in")
    element(browser, "#who")


def test_a_reader_sees_no_buttons_that_would_fail(dev: Dev, browser: webdriver.Chrome) -> None:
    with dev.http() as http:
        submitted = http.post("/v1/tasks", json={"textProcessing": {"text": "hello"}})
        task_id = submitted.json()["task"]["id"]
        delayed = http.post(
            "/v1/tasks", json={"textProcessing": {"text": "later"}, "options": {"delay": "3600s"}}
        )
        delayed_id = delayed.json()["task"]["id"]
        http.post(
            "/v1/schedules",
            json={
                "scheduleId": "hourly",
                "spec": {"interval": "3600s", "task": {"textProcessing": {"text": "x"}}},
            },
        )
    reader = make_key(dev, "ROLE_READER")
    sign_in(browser, dev, reader)
    assert "reader" in element(browser, "#who").text
    # The key lives in this tab's session storage only.
    assert browser.execute_script("return sessionStorage.getItem('conveyor.apiKey')") == reader
    assert browser.execute_script("return localStorage.length") == 0
    for page in (
        "#/tasks",
        f"#/tasks/{task_id}",
        f"#/tasks/{delayed_id}",
        "#/queues",
        "#/schedules",
        "#/failures",
    ):
        browser.get(f"{dev.url}/{page}")
        element(browser, "main h1")
        # Wait until the page has its data, then look for buttons.
        if page == "#/queues":
            element(browser, "#queues tbody tr")
        elif page == "#/schedules":
            element(browser, "#schedules tbody tr")
        elif page.startswith("#/tasks/"):
            element(browser, ".details")
        elif page == "#/tasks":
            element(browser, "#tasks tbody tr")
        # Paging and filtering only read; nothing else may be offered.
        allowed = {"Filter", "Open", "Previous page", "Next page"}
        assert set(buttons_in_main(browser)) <= allowed, (page, buttons_in_main(browser))
        assert not browser.find_elements(By.CSS_SELECTOR, "form.create, form.limits")
    assert console_errors(browser, REFUSED) == []


def test_an_operator_gets_the_buttons_and_a_bad_key_is_refused(
    dev: Dev, browser: webdriver.Chrome
) -> None:
    # Still signed in as the reader: signing out forgets the key.
    browser.get(f"{dev.url}/#/queues")
    click_button(element(browser, "header"), "Sign out")
    assert browser.execute_script("return sessionStorage.getItem('conveyor.apiKey')") is None
    element(browser, "input[name=key]").send_keys("cvk_000000000000_" + "x" * 43)
    click_button(browser, "Sign in")
    wait_for(browser, lambda d: "refused" in d.find_element(By.CSS_SELECTOR, "[role=alert]").text)
    element(browser, "input[name=key]").clear()
    sign_in(browser, dev, make_key(dev, "ROLE_OPERATOR"), "")
    row = element(browser, "#queues tbody tr")
    wait_for(browser, lambda d: "Pause" in buttons_in_main(d))
    assert row.find_elements(By.CSS_SELECTOR, "form.limits")
    assert console_errors(browser, REFUSED) == []
