"""The web console in a real Chromium against a real `conveyor dev` (authentication off):
tasks submitted over the API appear and finish live, a delayed task is cancelled from its
page, a failed one shows its traceback on its page and is retried from the failures view,
a queue paused and resumed. After each test the browser's console must have logged no
error."""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.support.console import (
    Dev,
    chromium,
    click_button,
    console_errors,
    element,
    needs_chromium,
    running_dev,
    wait_for,
)
from tests.support.helpers import png

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.timeout(300),
    needs_chromium,
]

TEXT = "The quick brown fox jumps over the lazy dog. The dog sleeps."


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    with running_dev(tmp_path_factory.mktemp("console")) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with chromium() as driver:
        yield driver


@pytest.fixture(autouse=True)
def no_console_errors(browser: webdriver.Chrome) -> Iterator[None]:
    console_errors(browser)  # what an earlier test left is that test's to report
    yield
    assert console_errors(browser) == []


def submit(dev: Dev, body: dict[str, Any]) -> str:
    with dev.http() as http:
        answer = http.post("/v1/tasks", json=body)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["task"]["id"])


def state_of(dev: Dev, task_id: str) -> dict[str, Any]:
    with dev.http() as http:
        task: dict[str, Any] = http.get(f"/v1/tasks/{task_id}").json()["task"]
        return task


def open_page(browser: webdriver.Chrome, dev: Dev, page: str) -> None:
    browser.get(f"{dev.url}/{page}")
    element(browser, "main h1")


def test_submitted_tasks_appear_and_complete_without_a_reload(
    dev: Dev, browser: webdriver.Chrome
) -> None:
    run = uuid.uuid4().hex[:8]
    open_page(browser, dev, f"#/tasks?label=run%3D{run}")
    element(browser, "#tasks")
    browser.execute_script("window.notReloaded = true")
    ids = [
        submit(dev, {"textProcessing": {"text": TEXT}, "options": {"labels": {"run": run}}})
        for _ in range(3)
    ]

    def states(d: webdriver.Chrome) -> dict[str, str]:
        rows = d.find_elements(By.CSS_SELECTOR, "#tasks tbody tr")
        return {str(r.get_attribute("data-task")): str(r.get_attribute("data-state")) for r in rows}

    wait_for(browser, lambda d: states(d) == dict.fromkeys(ids, "COMPLETED"))
    assert browser.execute_script("return window.notReloaded") is True
    # Over the multi-task stream where the gateway has it, else by listing again.
    with dev.http() as http:
        streams = "/v1/tasks:watch" in http.get("/openapi.json").json()["paths"]
    mode = element(browser, "#live-mode").text
    assert mode.startswith("● Live") if streams else mode.startswith("Refreshing"), mode
    # The counts per state come from the stats of the last day.
    completed = element(browser, ".counts .s-completed .n")
    wait_for(browser, lambda d: int(completed.text) >= 3)


def test_a_task_page_shows_its_timeline_and_result(dev: Dev, browser: webdriver.Chrome) -> None:
    task_id = submit(dev, {"textProcessing": {"text": TEXT}, "options": {"labels": {"k": "v"}}})
    open_page(browser, dev, f"#/tasks/{task_id}")
    wait_for(browser, lambda d: task_id in d.find_element(By.CSS_SELECTOR, "main h1").text)
    timeline = element(browser, ".timeline")
    wait_for(browser, lambda d: "COMPLETED" in timeline.text)
    assert [b.text for b in timeline.find_elements(By.CSS_SELECTOR, ".badge")] == [
        "PENDING",
        "RUNNING",
        "COMPLETED",
    ]
    stats = element(browser, "table.stats").text
    assert "Words 12" in stats and "Sentences 2" in stats
    assert "k=v" in element(browser, ".details").text
    # Its input, read in the API's FULL view, and the trace its submit started.
    assert element(browser, ".input-text").text == TEXT
    trace_id = state_of(dev, task_id)["traceId"]
    assert re.fullmatch("[0-9a-f]{32}", trace_id)
    assert element(browser, "#trace-id").text == trace_id
    # An image result is shown as an image, decoded by the browser.
    image = base64.b64encode(png(40, 30)).decode()
    image_id = submit(dev, {"imageProcessing": {"image": image}})
    open_page(browser, dev, f"#/tasks/{image_id}")
    shown = element(browser, ".columns img.result-image[alt^='Result']")
    wait_for(browser, lambda d: d.execute_script("return arguments[0].naturalWidth", shown) == 40)
    given = element(browser, ".input img.result-image")
    assert browser.execute_script("return arguments[0].naturalWidth", given) == 40


def test_tasks_are_filtered_by_creation_time(dev: Dev, browser: webdriver.Chrome) -> None:
    run = uuid.uuid4().hex[:8]
    body = {"textProcessing": {"text": TEXT}, "options": {"labels": {"run": run}}}
    first = submit(dev, body)
    time.sleep(0.01)  # the bound below falls between the two submits, to the millisecond
    second = submit(dev, body)

    def rows(d: webdriver.Chrome) -> list[str]:
        found = d.find_elements(By.CSS_SELECTOR, "#tasks tbody tr")
        return [str(r.get_attribute("data-task")) for r in found]

    open_page(browser, dev, f"#/tasks?label=run%3D{run}")
    wait_for(browser, lambda d: sorted(rows(d)) == sorted([first, second]))
    # Typed into the form as local time: nothing was created before 2000.
    before = element(browser, "input[name='before']")
    browser.execute_script("arguments[0].value = '2000-01-01T00:00:00'", before)
    click_button(element(browser, "form.filters"), "Filter")
    wait_for(browser, lambda d: "No tasks match." in d.find_element(By.CSS_SELECTOR, "main").text)
    assert "before=2000-01-01" in browser.current_url
    # From the second task's creation (a link, in the browser's local time): it and a task
    # submitted later, not the first.
    local = browser.execute_script(
        """const d = new Date(arguments[0]);
           d.setMinutes(d.getMinutes() - d.getTimezoneOffset());
           return d.toISOString().slice(0, 23);""",
        state_of(dev, second)["createTime"],
    )
    third = submit(dev, body)
    open_page(browser, dev, f"#/tasks?label=run%3D{run}&after={local}")
    wait_for(browser, lambda d: sorted(rows(d)) == sorted([second, third]))
    # The field holds the same instant, written as Chrome shortens it (.560 as .56).
    shown = element(browser, "input[name='after']").get_attribute("value")
    assert browser.execute_script(
        "return new Date(arguments[0]).getTime() === new Date(arguments[1]).getTime()",
        shown,
        local,
    ), (shown, local)


def test_a_running_task_shows_its_progress(dev: Dev, browser: webdriver.Chrome) -> None:
    batch = {"items": [str(i) for i in range(200)], "operation": "BATCH_OPERATION_SHA256"}
    task_id = submit(dev, {"batchProcessing": {**batch, "chunkSize": 20}})
    open_page(browser, dev, f"#/tasks/{task_id}")
    timeline = element(browser, ".timeline")
    wait_for(browser, lambda d: "COMPLETED" in timeline.text)
    # Every progress report is a version: the timeline lists them, chunk by chunk.
    assert "200/200" in timeline.text and "chunk 10/10" in timeline.text


def test_a_delayed_task_is_cancelled_from_its_page(dev: Dev, browser: webdriver.Chrome) -> None:
    task_id = submit(dev, {"textProcessing": {"text": TEXT}, "options": {"delay": "3600s"}})
    open_page(browser, dev, f"#/tasks/{task_id}")
    wait_for(browser, lambda d: "SCHEDULED" in d.find_element(By.CSS_SELECTOR, "main p").text)
    click_button(element(browser, ".actions"), "Cancel")
    # Nothing happens until the question is answered; Escape is "no", by keyboard alone.
    question = element(browser, "[role=alertdialog]")
    # The question takes the focus once it is drawn.
    wait_for(browser, lambda d: d.switch_to.active_element.text.startswith("Yes, cancel"))
    browser.switch_to.active_element.send_keys(Keys.ESCAPE)
    wait_for(browser, lambda d: d.switch_to.active_element.text == "Cancel")
    assert state_of(dev, task_id)["state"] == "TASK_STATE_SCHEDULED"
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    question = element(browser, "[role=alertdialog]")
    click_button(question, "Yes, cancel")
    wait_for(browser, lambda d: "CANCELLED" in d.find_element(By.CSS_SELECTOR, "main p").text)
    assert state_of(dev, task_id)["state"] == "TASK_STATE_CANCELLED"
    # A cancelled task offers retry and delete, no longer cancel.
    actions = element(browser, ".actions")
    wait_for(browser, lambda d: "Retry" in actions.text and "Cancel" not in actions.text)


def test_a_failed_task_is_retried_from_the_failures_view(
    dev: Dev, browser: webdriver.Chrome
) -> None:
    not_an_image = base64.b64encode(b"not an image").decode()
    task_id = submit(
        dev, {"imageProcessing": {"image": not_an_image}, "options": {"maxAttempts": 1}}
    )
    wait_for(browser, lambda d: state_of(dev, task_id)["state"] == "TASK_STATE_FAILED")
    failed = state_of(dev, task_id)
    assert failed["error"]["traceback"].startswith("Traceback (most recent call last):")
    # Its page shows the attempt's traceback, folded, and it fits a phone.
    browser.set_window_size(390, 844)
    try:
        open_page(browser, dev, f"#/tasks/{task_id}")
        # Its input is no image: said in words, not drawn as a broken one.
        said = element(browser, ".input-bytes").text
        assert said.startswith("12 bytes that are not an image"), said
        assert not browser.find_elements(By.CSS_SELECTOR, "img[alt='Input image']")
        summary = element(browser, "details.traceback > summary")
        block = element(browser, "pre.traceback")
        assert summary.text == "Traceback" and not block.is_displayed()
        summary.click()
        wait_for(browser, lambda d: block.is_displayed() or None)
        assert block.text == failed["error"]["traceback"].rstrip("\n")
        assert block.value_of_css_property("white-space") == "pre"
        assert "monospace" in block.value_of_css_property("font-family")
        assert block.get_attribute("tabindex") == "0"  # its scroll is reachable by keys
        width = browser.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth]"
        )
        assert width[0] <= width[1], width
    finally:
        browser.set_window_size(1280, 900)
    open_page(browser, dev, "#/failures")

    def retry_group(d: webdriver.Chrome) -> str | None:
        for article in d.find_elements(By.CSS_SELECTOR, "article.group"):
            if task_id[:8] in article.text and "not a recognised image format" in article.text:
                assert "image_processing" in article.find_element(By.TAG_NAME, "h2").text
                buttons = article.find_elements(By.TAG_NAME, "button")
                retry = next(b for b in buttons if b.text.startswith("Retry all"))
                label = str(retry.text)
                retry.click()
                return label
        return None

    label = wait_for(browser, retry_group)
    click_button(element(browser, "[role=alertdialog]"), "Yes, " + label.lower())
    wait_for(browser, lambda d: "Retried" in d.find_element(By.CSS_SELECTOR, ".notice").text)
    # Retried: a fresh attempt budget, so a newer version than the failure's.
    assert int(state_of(dev, task_id)["version"]) > int(failed["version"])


def test_a_queue_is_paused_resumed_and_limited(dev: Dev, browser: webdriver.Chrome) -> None:
    open_page(browser, dev, "#/queues")
    row = '#queues tr[data-queue="ai_summarization"]'

    def paused() -> bool:
        with dev.http() as http:
            queues = http.get("/v1/queues").json()["queues"]
        return any(q["type"] == "ai_summarization" and q.get("paused") for q in queues)

    click_button(element(browser, row), "Pause")
    wait_for(browser, lambda d: "paused" in d.find_element(By.CSS_SELECTOR, row).text)
    assert paused()
    click_button(element(browser, row), "Resume")
    wait_for(browser, lambda d: "Pause" in d.find_element(By.CSS_SELECTOR, row).text)
    assert not paused()
    limit = element(browser, f'{row} input[name="maxConcurrency"]')
    limit.clear()
    limit.send_keys("3")
    click_button(element(browser, row), "Save limits")
    wait_for(browser, lambda d: "saved" in d.find_element(By.CSS_SELECTOR, ".notice").text)
    with dev.http() as http:
        queues = http.get("/v1/queues").json()["queues"]
    limits = next(q["limits"] for q in queues if q["type"] == "ai_summarization")
    assert limits["maxConcurrency"] == 3


def test_a_schedule_is_created_triggered_paused_and_deleted(
    dev: Dev, browser: webdriver.Chrome
) -> None:
    open_page(browser, dev, "#/schedules")
    name = "console-" + uuid.uuid4().hex[:6]
    element(browser, 'form.create input[name="id"]').send_keys(name)
    element(browser, 'form.create input[name="timing"]').send_keys("3600")
    element(browser, 'form.create textarea[name="text"]').send_keys(TEXT)
    click_button(element(browser, "form.create"), "Create schedule")
    row = f'#schedules tr[data-schedule="{name}"]'
    element(browser, row)
    click_button(element(browser, row), "Trigger now")
    wait_for(
        browser, lambda d: d.find_element(By.CSS_SELECTOR, f"{row} td:nth-child(6)").text[:1] == "1"
    )
    click_button(element(browser, row), "Pause")
    wait_for(browser, lambda d: "paused" in d.find_element(By.CSS_SELECTOR, row).text)
    click_button(element(browser, row), "Delete")
    click_button(element(browser, "[role=alertdialog]"), "Yes, delete")
    wait_for(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, row))
    with dev.http() as http:
        assert http.get(f"/v1/schedules/{name}").status_code == 404


def test_an_admin_switches_namespace(dev: Dev, browser: webdriver.Chrome) -> None:
    elsewhere = f"team-{uuid.uuid4().hex[:6]}"
    here = submit(dev, {"textProcessing": {"text": TEXT}})
    with dev.http() as http:
        made = http.post(
            "/v1/tasks",
            json={"textProcessing": {"text": TEXT}},
            headers={"conveyor-namespace": elsewhere},
        )
        task_id = made.json()["task"]["id"]
    open_page(browser, dev, "#/tasks")
    field = element(browser, "#namespace")
    field.clear()
    field.send_keys(elsewhere)
    click_button(element(browser, "header"), "Switch")

    def rows(d: webdriver.Chrome) -> list[str | None]:
        return [
            r.get_attribute("data-task")
            for r in d.find_elements(By.CSS_SELECTOR, "#tasks tbody tr")
        ]

    wait_for(browser, lambda d: rows(d) == [task_id])
    # A name that is not a namespace is refused, and the console stays where it was.
    field = element(browser, "#namespace")
    field.clear()
    field.send_keys("Not A Namespace!")
    click_button(element(browser, "header"), "Switch")
    wait_for(browser, lambda d: "namespace" in d.find_element(By.CSS_SELECTOR, "[role=alert]").text)
    field = element(browser, "#namespace")
    field.clear()
    field.send_keys("default")
    click_button(element(browser, "header"), "Switch")
    wait_for(browser, lambda d: here in rows(d) and task_id not in rows(d))
    refused = re.compile(r"/v1/whoami - Failed to load resource: .* 400")
    assert console_errors(browser, refused) == []


def test_the_overview_counts_and_charts(dev: Dev, browser: webdriver.Chrome) -> None:
    with dev.http() as http:
        stats = http.get("/v1/tasks:stats?window=3600s&bucket=60s").json()
    for _ in range(2):
        submit(dev, {"textProcessing": {"text": TEXT}})
    open_page(browser, dev, "#/")
    wait_for(
        browser, lambda d: int(d.find_element(By.CSS_SELECTOR, ".counts .s-completed .n").text) > 0
    )
    charts = browser.find_elements(By.CSS_SELECTOR, "figure.chart")
    assert len(charts) == 4
    bars = element(browser, ".bar[aria-label^='text_processing']")
    assert "COMPLETED" in str(bars.get_attribute("aria-label"))
    # Throughput and failure rate come from the store's per-minute counts of the whole
    # last hour, not from samples taken since the page opened.
    done = sum(int(b.get("completed", 0)) for b in stats["series"])
    throughput = charts[1].find_element(By.CSS_SELECTOR, ".summary")
    wait_for(browser, lambda d: int(throughput.text.split()[0]) >= done + 2)
    assert re.fullmatch(
        r"\d+ failed of \d+ finished in the last hour",
        charts[2].find_element(By.CSS_SELECTOR, ".summary").text,
    )
    points = charts[1].find_element(By.CSS_SELECTOR, "polyline").get_attribute("points")
    assert len(str(points).split()) == 60


@pytest.mark.parametrize("page", ["#/", "#/tasks", "#/failures", "#/queues", "#/schedules"])
def test_every_control_is_named_and_a_phone_needs_no_sideways_scroll(
    dev: Dev, browser: webdriver.Chrome, page: str
) -> None:
    browser.set_window_size(390, 844)
    try:
        open_page(browser, dev, page)
        unnamed = browser.execute_script(
            """return [...document.querySelectorAll('input, select, textarea, button')]
              .filter(e => e.type !== 'hidden' && !(e.labels && e.labels.length)
                && !e.getAttribute('aria-label') && !e.textContent.trim())
              .map(e => e.outerHTML)"""
        )
        assert unnamed == []
        # Wide tables scroll inside their own box; the page itself fits the phone.
        width = browser.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth]"
        )
        assert width[0] <= width[1], width
    finally:
        browser.set_window_size(1280, 900)
