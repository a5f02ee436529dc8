"""explorer.html in a real browser: headless Chromium from Debian (tests/install_browser.sh)
loads the page from disk, a token is clicked, and what is drawn is checked against the
attention patterns recomputed here."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attention_reference import TEXT, load_trained, reference_records

pytestmark = pytest.mark.slow  # the commands run as subprocesses

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1200,1000"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip("needs Debian's chromium and chromium-driver: run bash tests/install_browser.sh")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def records(trained_out) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    model, tokenizer = load_trained(trained_out)
    return reference_records(model, torch.tensor([tokenizer.encode(TEXT)]))  # patterns, raw scores, value lengths


@pytest.fixture(scope="module")
def expected(records) -> torch.Tensor:
    return records[0]  # (n_layer, nh, T, T)


def drawn_weights(browser) -> dict[int, float | None]:
    """Each token's data-weight on the page (None where it is not shaded)."""
    from selenium.webdriver.common.by import By

    spans = browser.find_elements(By.CSS_SELECTOR, "#text span.tok")
    return {int(s.get_attribute("data-i")): (None if s.get_attribute("data-weight") is None
                                             else float(s.get_attribute("data-weight"))) for s in spans}


def background_alpha(browser, i: int) -> float:
    color = browser.execute_script(
        f"return getComputedStyle(document.querySelector('span.tok[data-i=\"{i}\"]')).backgroundColor")
    parts = re.findall(r"[\d.]+", color)  # rgb(r, g, b) or rgba(r, g, b, a)
    return float(parts[3]) if len(parts) == 4 else 1.0


def check_shading(browser, expected: torch.Tensor, layer: int, head: int, query: int) -> None:
    """Tokens 0..query carry the weights the query gives them; later tokens carry none."""
    weights = drawn_weights(browser)
    row = expected[layer, head, query].numpy()  # (T,)
    assert np.allclose([weights[k] for k in range(query + 1)], row[: query + 1], atol=1e-4)
    assert all(weights[k] is None for k in range(query + 1, len(weights)))
    alphas = [background_alpha(browser, k) for k in range(len(weights))]
    assert np.allclose(alphas[: query + 1], row[: query + 1], atol=0.01)  # shaded as strongly as attended
    assert all(a == 0.0 for a in alphas[query + 1 :])


def check_steps(browser, records, layer: int, head: int, query: int, head_size: int) -> None:
    """The step view: every key's raw q . k, scaled, masked (later keys -inf), the softmax weight
    and its weighted value's size, as recomputed here."""
    from selenium.webdriver.common.by import By

    patterns, raw, norms = (r[layer, head].numpy() for r in records)
    table = {name: [c.text for c in browser.find_elements(By.CSS_SELECTOR, f"#steps td.{name}")]
             for name in ("raw", "scaled", "masked", "weight", "contribution")}
    T = raw.shape[-1]
    assert np.allclose([float(x) for x in table["raw"]], raw[query], atol=2e-3)
    assert np.allclose([float(x) for x in table["scaled"]], raw[query] / np.sqrt(head_size), atol=2e-3)
    assert table["masked"][query + 1 :] == ["-\u221e"] * (T - query - 1)
    assert np.allclose([float(x) for x in table["weight"]], patterns[query], atol=2e-4)  # 0 after the query
    assert np.allclose([float(x) for x in table["contribution"]], patterns[query] * norms, atol=2e-3)


def canvas_alpha(browser, query: int, key: int) -> int:
    """Alpha of the heatmap pixel at the centre of cell (query, key): 0 where nothing is drawn."""
    return browser.execute_script(
        "const c = document.getElementById('heatmap'), s = cellSize();"
        f"const x = MARGIN + ({key} + 0.5) * s, y = MARGIN + ({query} + 0.5) * s;"
        "return c.getContext('2d').getImageData(x, y, 1, 1).data[3];")


def click_heatmap_row(browser, query: int) -> None:
    """Click the heatmap in row `query`, on its first cell."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = browser.find_element(By.ID, "heatmap")
    dx, dy = browser.execute_script(  # from the canvas's centre, where selenium's offsets start
        "const r = document.getElementById('heatmap').getBoundingClientRect(), s = cellSize();"
        f"return [MARGIN + 0.5 * s - r.width / 2, MARGIN + ({query} + 0.5) * s - r.height / 2];")
    ActionChains(browser).move_to_element_with_offset(canvas, int(dx), int(dy)).click().perform()


def test_explorer_in_headless_chromium(browser, attention_run, records, expected, trained_out, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get((attention_run / "explorer.html").resolve().as_uri())
    T = len(TEXT)
    check_shading(browser, expected, 0, 0, T - 1)  # the page opens on the last token
    browser.find_element(By.CSS_SELECTOR, 'span.tok[data-i="10"]').click()
    check_shading(browser, expected, 0, 0, 10)
    assert "token 10 " in browser.find_element(By.ID, "readout").text

    Select(browser.find_element(By.ID, "layer")).select_by_value("1")
    Select(browser.find_element(By.ID, "head")).select_by_value("1")
    check_shading(browser, expected, 1, 1, 10)  # the clicked token stays chosen
    check_steps(browser, records, 1, 1, 10, load_trained(trained_out)[0].config.head_size)
    assert not torch.allclose(expected[1, 1, 10], expected[0, 0, 10], atol=1e-3)  # so the change was visible
    assert "layer 1, head 1: token 10 " in browser.find_element(By.ID, "readout").text

    for query, key in ((3, 0), (10, 10), (T - 1, 5)):
        assert canvas_alpha(browser, query, key) == 255  # at or before the diagonal: drawn
        assert canvas_alpha(browser, key, query) == 0 or key == query  # the masked triangle: empty

    click_heatmap_row(browser, 5)
    check_shading(browser, expected, 1, 1, 5)

    shot = tmp_path / "explorer.png"
    browser.save_screenshot(str(shot))
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    assert pixels.shape[0] > 500 and pixels.shape[1] > 800 and pixels.std() > 20  # not blank
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
