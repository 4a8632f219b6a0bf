"""The Label Studio connector against a real Label Studio (PyPI label-studio in its own virtualenv) and a real raydq
(``python -m raydq.serve.local``), both on 127.0.0.1, with the connector running as the real job
(``python jobs/label_studio.py``, webhooks and image proxy included).

One round trip: tasks appear for the selected items; an annotator who signed up through Label Studio's form
annotates through Label Studio's API; the labels reach raydq under the annotator's email; the head retrains; the
next tasks come from DropQuery; a skipped and a deleted task hand their items back. Then Label Studio, raydq and
the connector each restart in the middle of a sync, and in the end raydq holds exactly the annotated labels (none
lost, none twice) and Label Studio holds one task per item."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from raydq.data.fashion_mnist import load_fashion_mnist
from raydq.labels import LabelStore
from tests.integrations.label_studio_server import LabelStudioServer, ls_request
from tests.integrations.services import REPO, RaydqServer, free_port, write_fmnist_store

pytestmark = pytest.mark.slow
RAYDQ_TOKEN = "raydq-admin-token-for-the-connector"
SECRET = "webhook-secret-0123456789abcdef"
QUEUE, BATCH = 8, 4
ANNOTATOR = "annotator@example.com"


class Connector:
    """``python jobs/label_studio.py`` as a child process (settings from the environment)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log, self.proc = env, log, None
        self.url = env["RAYDQ_LS_PUBLIC_URL"]

    def start(self) -> Connector:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "jobs/label_studio.py", "--log-level", "INFO"], cwd=REPO,
                                         env={**os.environ, "PYTHONPATH": str(REPO), **self.env}, stdout=log,
                                         stderr=subprocess.STDOUT)  # fmt: skip
        wait_for(lambda: _get(self.url + "/healthz") is not None, what="the connector's endpoint")
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)
        self.proc = None


def _get(url: str, **kw):
    try:
        r = httpx.get(url, timeout=10, **kw)
        return r if r.status_code == 200 else None
    except httpx.HTTPError:
        return None


def wait_for(predicate, *, timeout: float = 120.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def world(tmp_path):
    store, truth = write_fmnist_store(tmp_path / "store", n=200)
    raydq = RaydqServer(store, tmp_path / "labels.db", token=RAYDQ_TOKEN, log=tmp_path / "raydq.log").start()
    ls = LabelStudioServer(tmp_path / "ls", tmp_path / "label-studio.log").start()
    port = free_port()
    env = {
        "RAYDQ_LS_LABEL_STUDIO_URL": ls.url,
        "RAYDQ_LS_LABEL_STUDIO_TOKEN": ls.personal_access_token(),  # the modern kind (legacy ones are off by default)
        "RAYDQ_LS_RAYDQ_URL": raydq.url,
        "RAYDQ_LS_RAYDQ_TOKEN": RAYDQ_TOKEN,
        "RAYDQ_LS_QUEUE_SIZE": str(QUEUE),
        "RAYDQ_LS_BATCH_SIZE": str(BATCH),
        "RAYDQ_LS_POLL_INTERVAL_S": "3",
        "RAYDQ_LS_STATE_PATH": str(tmp_path / "sync-state.db"),
        "RAYDQ_LS_LISTEN_PORT": str(port),
        "RAYDQ_LS_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "RAYDQ_LS_WEBHOOK_SECRET": SECRET,
        "RAYDQ_LS_IMAGE_SIZE": "64",
    }
    connector = Connector(env, tmp_path / "connector.log")
    yield raydq, ls, connector, truth, tmp_path
    connector.stop()
    ls.stop()
    raydq.stop()


class Annotator:
    """A person in Label Studio: signs up, then answers tasks through Label Studio's API with their own token."""

    def __init__(self, ls: LabelStudioServer) -> None:
        self.ls = ls
        self.token = ls.sign_up(ANNOTATOR, "annotator-password-1")
        self.answers: dict[str, str | None] = {}  # raydq id -> label, None for a skip

    def tasks(self) -> list[dict]:
        r = ls_request("GET", self.ls.url + "/api/tasks/", params={"project": self.project(), "page_size": 1000,
                       "fields": "all"}, headers={"Authorization": f"Token {self.token}"})  # fmt: skip
        return r.json()["tasks"]

    def project(self) -> int:
        r = ls_request("GET", self.ls.url + "/api/projects/", headers={"Authorization": f"Token {self.token}"})
        return next(p["id"] for p in r.json()["results"] if p["title"] == "raydq")

    def open_tasks(self) -> list[dict]:
        return [t for t in self.tasks() if not t["annotations"]]

    def answer(self, task: dict, label: str | None) -> None:
        body = {"result": [], "was_cancelled": True} if label is None else {
            "result": [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}],
            "was_cancelled": False,
        }  # fmt: skip
        r = ls_request("POST", f"{self.ls.url}/api/tasks/{task['id']}/annotations/", json=body,
                       headers={"Authorization": f"Token {self.token}"})  # fmt: skip
        assert r.status_code == 201, r.text[:300]
        self.answers[task["data"]["raydq_id"]] = label


def stored_labels(database: Path) -> tuple[dict[str, str], dict[str, int], dict[str, str | None]]:
    store = LabelStore(f"sqlite:///{database}")
    try:
        labels = store.training_snapshot().labels
        events = {i: len(store.history(i)) for i in labels}
        who = {i: store.get_label(i).annotator for i in labels}
    finally:
        store.close()
    return labels, events, who


def test_round_trip_with_restarts_of_every_side(world):
    raydq, ls, connector, truth, tmp = world
    connector.start()
    annotator = Annotator(ls)
    r0 = wait_for(lambda: len(annotator.open_tasks()) == QUEUE and annotator.open_tasks(), what="the first tasks")
    time.sleep(1)
    assert len(annotator.tasks()) == QUEUE  # a full queue: nothing more selected
    assert {t["data"]["raydq_model_version"] for t in r0} == {0}  # cold start: no head yet
    assert {t["data"]["raydq_strategy"] for t in r0} == {"centroid"}
    project = ls_request("GET", f"{ls.url}/api/projects/{annotator.project()}/", headers=ls.admin_headers).json()
    assert project["show_skip_button"] and project["parsed_label_config"]["label"]["labels"] == list(
        dict.fromkeys(["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                       "Ankle boot"]))  # fmt: skip

    # The image URL in a task is the connector's signed proxy of raydq's image: exactly the source pixels.
    task = r0[0]
    image = httpx.get(task["data"]["image"], timeout=30)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    index = int(task["data"]["raydq_id"].rsplit("/", 1)[1])
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(image.content))), load_fashion_mnist("test")[0][index])
    url = task["data"]["image"]
    tampered = url[:-1] + ("0" if url[-1] != "0" else "1")
    assert httpx.get(tampered, timeout=30).status_code == 403  # only URLs the connector signed are served
    assert httpx.post(connector.url + "/webhook", json={}, timeout=10).status_code == 401  # no secret, no entry

    # Round 1: four answers and one skip, through Label Studio's API.
    for t in r0[:4]:
        annotator.answer(t, truth[t["data"]["raydq_id"]])
    annotator.answer(r0[4], None)
    deleted = r0[7]["data"]["raydq_id"]  # an admin deletes a task: its item goes back to raydq when its batch is done
    ls_request("DELETE", f"{ls.url}/api/tasks/{r0[7]['id']}/", headers=ls.admin_headers)
    database = tmp / "labels.db"
    wait_for(lambda: len(stored_labels(database)[0]) == 4, what="the first labels in raydq")
    labels, _, who = stored_labels(database)
    assert labels == {i: v for i, v in annotator.answers.items() if v} and set(who.values()) == {ANNOTATOR}
    status = wait_for(lambda: (s := httpx.get(raydq.url + "/status", headers={"Authorization": f"Bearer {RAYDQ_TOKEN}"},
                      timeout=30).json())["model_version"] >= 1 and s, what="a retrained head")  # fmt: skip
    assert status["labeled"] == 4
    assert _get(connector.url + "/healthz").json()["webhooks"] >= 1  # Label Studio delivered webhooks

    def annotate(n: int) -> None:
        for t in annotator.open_tasks()[:n]:
            annotator.answer(t, truth[t["data"]["raydq_id"]])

    # Label Studio dies in the middle of a sync and comes back on the same database.
    annotate(3)
    ls.restart(signal.SIGKILL)
    annotate(2)
    # raydq dies right after annotations arrive; one more is made while it is down.
    annotate(2)
    raydq.stop(signal.SIGKILL)
    annotate(1)
    raydq.start()
    # The connector dies mid-sync, answers arrive while it is down, it comes back.
    annotate(2)
    connector.stop(signal.SIGKILL)
    annotate(2)
    # The killed connector's last import commits after its successor read the project (Label Studio was still
    # importing): a second copy of a task's item appears; the connector deletes it.
    copy = annotator.tasks()[-1]
    ls_request("POST", f"{ls.url}/api/projects/{annotator.project()}/import", json=[{"data": copy["data"]}],
               headers=ls.admin_headers)  # fmt: skip
    connector.start()

    expected = {i: v for i, v in annotator.answers.items() if v}
    wait_for(lambda: stored_labels(database)[0] == expected, timeout=180, what="every answer in raydq")
    wait_for(lambda: QUEUE - BATCH < len(annotator.open_tasks()) <= QUEUE, what="the queue topped up again")
    open_ids = {t["data"]["raydq_id"] for t in annotator.open_tasks()}
    labels, events, who = stored_labels(database)
    assert labels == expected  # none lost
    assert set(events.values()) == {1} and set(who.values()) == {ANNOTATOR}  # none applied twice
    per_item = Counter(t["data"]["raydq_id"] for t in annotator.tasks())
    assert max(per_item.values()) == 1  # one task per item, across every restart
    skipped = [i for i, v in annotator.answers.items() if v is None]
    assert skipped and not set(skipped) & set(labels)
    store = LabelStore(f"sqlite:///{database}")
    leased = store.leased_ids()
    store.close()
    assert not set(skipped) & set(leased)  # the skipped item's lease was released once its batch was done
    assert deleted not in labels and deleted not in leased and deleted not in per_item  # so was the deleted one's
    assert set(leased) == open_ids  # exactly the open tasks hold leases
    newer = [t for t in annotator.tasks() if t["data"]["raydq_model_version"] >= 1]
    assert newer and {t["data"]["raydq_strategy"] for t in newer} == {"dropquery"}  # the next tasks: DropQuery
    assert "sentry.io" not in (tmp / "label-studio.log").read_text(errors="replace")  # Label Studio stayed offline
    print(f"\nround trip: {len(labels)} labels, {len(per_item)} tasks; logs in {tmp}")


def test_an_annotator_labels_in_label_studios_own_page(world):
    """Label Studio's labeling page in Chromium shows the connector's image (cross-origin, signed) and an answer
    clicked there becomes a raydq label under the annotator's email."""
    from selenium.common.exceptions import ElementClickInterceptedException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    from tests.browser.chromium import start_chromium

    _, ls, connector, truth, tmp = world
    connector.start()
    annotator = Annotator(ls)
    task = wait_for(lambda: annotator.open_tasks(), what="the first tasks")[0]
    label = truth[task["data"]["raydq_id"]]
    driver = start_chromium(tmp / "driver.log", size="1400,900")
    try:
        driver.get(ls.url + "/user/login/")
        driver.find_element(By.NAME, "email").send_keys(ANNOTATOR)
        password = driver.find_element(By.NAME, "password")
        password.send_keys("annotator-password-1")
        password.submit()
        wait_for(lambda: "/user/login" not in driver.current_url, what="the login")
        driver.get(f"{ls.url}/projects/{annotator.project()}/data?task={task['id']}")
        rendered = "return [...document.querySelectorAll('img')].filter(i => i.src === arguments[0] && i.complete)" \
                   ".map(i => i.naturalWidth)"  # fmt: skip
        widths = wait_for(lambda: driver.execute_script(rendered, task["data"]["image"]), timeout=120,
                          what="the task's image in Label Studio's page")  # fmt: skip
        assert 28 in widths  # Fashion-MNIST's 28 x 28, through the signed proxy (never enlarged)

        def click(xpath: str) -> bool:
            """Click the first visible match; the page re-renders while it loads, so a stale element is retried."""
            try:
                for element in driver.find_elements(By.XPATH, xpath):
                    if element.is_displayed():
                        element.click()
                        return True
            except (StaleElementReferenceException, ElementClickInterceptedException):
                pass
            return False

        wait_for(lambda: click(f"//*[normalize-space(text())='{label}']"), what=f"the choice {label!r} clicked")
        shot = tmp / "label-studio-page.png"
        driver.save_screenshot(str(shot))
        print(f"\nLabel Studio page screenshot: {shot}")
        wait_for(lambda: click("//button[normalize-space(.)='Submit']"), what="Submit clicked")
    finally:
        driver.quit()
    labels = wait_for(lambda: stored_labels(tmp / "labels.db")[0], what="the label in raydq")
    assert labels == {task["data"]["raydq_id"]: label}
    assert stored_labels(tmp / "labels.db")[2] == {task["data"]["raydq_id"]: ANNOTATOR}
