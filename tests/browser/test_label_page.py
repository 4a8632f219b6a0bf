"""The labeling page in a real headless Chromium (Debian's chromium + chromium-driver, driven by selenium): open
``/label`` on a real server with a token, label a whole batch with the keyboard only (class keys, arrows, a skip, an
undo, Enter), and find exactly those labels in the database. A screenshot is kept as a test artifact."""

from __future__ import annotations

import os
import time

import pytest

from raydq.data.fashion_mnist import CLASS_NAMES
from raydq.labels import LabelStore
from tests.browser.chromium import start_chromium
from tests.integrations.services import RaydqServer, write_fmnist_store

pytestmark = pytest.mark.slow
TOKEN = "browser-test-token-0123456789"
CLASS_KEYS = "1234567890abcdefghijklmnopqrtvwxyz"  # as label.js assigns them
BATCH = 12


@pytest.fixture
def browser(tmp_path):
    driver = start_chromium(tmp_path / "driver.log")
    yield driver
    driver.quit()


@pytest.fixture
def server(tmp_path):
    store, truth = write_fmnist_store(tmp_path / "store", n=120)
    srv = RaydqServer(store, tmp_path / "labels.db", token=TOKEN, log=tmp_path / "raydq.log").start()
    yield srv, truth, tmp_path / "labels.db"
    srv.stop()


def _wait(predicate, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")


def test_label_a_batch_with_the_keyboard(browser, server, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    srv, truth, database = server
    classes = list(CLASS_NAMES)  # the service's classes, in its order (the page numbers them the same way)
    key_of = {c: CLASS_KEYS[i] for i, c in enumerate(classes)}

    def press(*keys):
        ActionChains(browser).send_keys(*keys).perform()

    def focused_id() -> str:
        return browser.execute_script("return document.activeElement.dataset.id || ''")

    def tile_answer(item_id: str) -> str:
        return browser.execute_script(
            "return document.querySelector(`.tile[data-id='${arguments[0]}'] .answer`).textContent", item_id
        )

    browser.get(srv.url + "/label")
    token = browser.find_element(By.ID, "token")
    token.send_keys(TOKEN)
    token.send_keys(Keys.ENTER)  # submits the start form
    _wait(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#grid .tile")) == BATCH, what="a batch in the grid")
    _wait(lambda: browser.execute_script(
        "return [...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth === 28)"
    ), what="every image decoded (28 x 28 Fashion-MNIST)")  # fmt: skip
    first_batch = browser.execute_script("return document.body.dataset.batchId")
    ids = [t.get_attribute("data-id") for t in browser.find_elements(By.CSS_SELECTOR, "#grid .tile")]
    assert focused_id() == ids[0]
    buttons = [b.text for b in browser.find_elements(By.CSS_SELECTOR, "#classes button")]
    assert buttons[0] == f"1 {classes[0]}" and buttons[9] == f"0 {classes[9]}"  # keys are shown on the buttons

    # Arrow keys move the focus (the grid is several columns wide at this window size).
    press(Keys.ARROW_RIGHT)
    assert focused_id() == ids[1]
    press(Keys.ARROW_LEFT)
    assert focused_id() == ids[0]

    expected: dict[str, str] = {}
    wrong = next(c for c in classes if c != truth[ids[0]])
    press(key_of[wrong])  # a mistake on the first item ...
    assert tile_answer(ids[0]) == wrong and focused_id() == ids[1]
    press("u")  # ... undone: the focus goes back to it
    assert tile_answer(ids[0]) == "" and focused_id() == ids[0]
    for n, item_id in enumerate(ids):
        assert focused_id() == item_id  # answering moves on to the next item
        if n == 5:
            press("s")  # skip one
            assert tile_answer(item_id) == "skipped"
            continue
        press(key_of[truth[item_id]])
        expected[item_id] = truth[item_id]
    assert browser.find_element(By.ID, "progress").text == f"{BATCH} / {BATCH}"
    assert browser.find_element(By.ID, "model-version").text == "v0"

    shot = tmp_path / "label-page.png"
    browser.save_screenshot(str(shot))
    print(f"\nlabeling page screenshot: {shot}")
    if os.environ.get("RAYDQ_DOCS_SCREENSHOT"):  # how docs/label-page.png was made
        browser.save_screenshot(os.environ["RAYDQ_DOCS_SCREENSHOT"])

    press(Keys.ENTER)  # confirm: the labels are sent, the skipped item handed back, the next batch shown
    _wait(lambda: browser.execute_script("return document.body.dataset.batchId") != first_batch, what="next batch")
    assert browser.find_element(By.ID, "labeled").text == str(BATCH - 1)

    store = LabelStore(f"sqlite:///{database}")
    try:
        stored = store.training_snapshot().labels
        assert stored == expected  # exactly the labels typed: none lost, none extra, the skipped one absent
        assert all(len(store.history(i)) == 1 for i in expected)  # one event each: the undone mistake never left
        assert ids[5] not in store.leased_ids()  # the skipped item went back to the pool
    finally:
        store.close()
    status = browser.execute_script(
        "return fetch('status', {headers: {Authorization: 'Bearer ' + sessionStorage.getItem('raydq-token')}})"
        ".then(r => r.json())"
    )
    assert status["labeled"] == BATCH - 1 and status["leased"] == BATCH  # the new batch is the only lease
    assert browser.execute_script("return sessionStorage.getItem('raydq-token')") == TOKEN
