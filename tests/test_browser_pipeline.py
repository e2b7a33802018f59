"""The pipeline in Chromium by clicks alone: upload a zipped model, prune, store, compile, compare under its name.

And deep links: a fresh server whose first request is a sub-page shows the app's own navigation.
"""

import io
import re
import zipfile
from urllib.parse import quote_plus

import pytest

from core.model_source import BUNDLED, bundled_model_dir, resolve
from tests.browser import chromium_page, dashboard, screenshot

pytestmark = pytest.mark.slow

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def zipped_tiny_model(folder) -> bytes:
    """bert-tiny (MiniLM's vocabulary, so MiniLM's tokenizer fits it) as a user would zip it."""
    resolve("bert-tiny").load_model().save_pretrained(folder)
    tokenizer_dir = bundled_model_dir(BUNDLED["minilm"])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in folder.iterdir():
            archive.write(path, f"tiny-bert/{path.name}")
        for name in TOKENIZER_FILES:
            if (tokenizer_dir / name).exists():
                archive.write(tokenizer_dir / name, f"tiny-bert/{name}")
    return buffer.getvalue()


def click_link(page, name: str, heading: str) -> None:
    page.get_by_role("link", name=name).first.click()
    page.get_by_role("heading", name=heading, exact=True).wait_for(timeout=60_000)


def wait_for_text(page, text: str, timeout_ms: int, shot: str) -> None:
    """Wait for ``text``; on a timeout keep a screenshot of what the page showed instead."""
    try:
        page.get_by_text(text).first.wait_for(timeout=timeout_ms)
    except Exception:
        screenshot(page, f"{shot}-failed")
        raise


def no_exception(page) -> None:
    assert page.get_by_test_id("stException").count() == 0, page.get_by_test_id("stException").all_inner_texts()


def test_upload_prune_store_compile_compare_by_clicks(sparselab_home, tmp_path):
    upload = tmp_path / "tiny-bert.zip"
    upload.write_bytes(zipped_tiny_model(tmp_path / "saved"))
    with dashboard(sparselab_home) as url, chromium_page() as page:
        page.goto(f"{url}/library")
        page.get_by_role("heading", name="Library", exact=True).wait_for(timeout=60_000)
        page.get_by_text("Upload a model").click()
        # The browser sends the file in the background; pressing Add before the server has it submits no file
        # (CI's loaded host showed exactly that), so wait for the upload's own response first.
        with page.expect_response(lambda r: "/_stcore/upload_file/" in r.url, timeout=120_000) as sent:
            page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(upload))
        assert sent.value.ok, sent.value.status
        page.get_by_test_id("stFileChipName").filter(has_text="tiny-bert.zip").wait_for(timeout=60_000)
        page.get_by_role("button", name="Add to the library").click()
        added = page.get_by_test_id("stAlertContentSuccess").filter(has_text="Added")
        added.wait_for(timeout=120_000)
        name = re.search(r"Added (.+) to the library", added.inner_text()).group(1).strip()
        assert name.startswith("tiny-bert · ")
        screenshot(page, "pipeline-1-library")

        click_link(page, "Prune this model", "Prune")
        form = page.get_by_test_id("stForm").first
        assert quote_plus(name) in page.url  # the hand-off chose the model (the picker reads it from the URL)
        form.get_by_role("button", name="Prune and measure").click()
        wait_for_text(page, "is in the library as", 600_000, "pipeline-2-prune")
        no_exception(page)
        pruned = re.search(r"in the library as (.+?)(?: · from the cache)?$",
                           page.get_by_text("is in the library as").inner_text().strip())
        pruned_name = pruned.group(1).strip()
        assert pruned_name.startswith(f"{name} magnitude 0.9 · ")  # pruned from the uploaded model
        screenshot(page, "pipeline-2-prune")

        click_link(page, "Store this model", "Store")
        form = page.get_by_test_id("stForm").first
        assert quote_plus(pruned_name) in page.url
        form.get_by_role("button", name="Quantize, save and verify").click()
        wait_for_text(page, "Reload bit-exact", 600_000, "pipeline-3-store")
        no_exception(page)
        screenshot(page, "pipeline-3-store")

        click_link(page, "Compile this model", "Compile")
        form = page.get_by_test_id("stForm").first
        assert quote_plus(pruned_name) in page.url and "sparse=pruned+folder" in page.url
        form.get_by_text("Block-shape sweep").click()  # the one-layer sweep is not what this test is about
        form.get_by_role("button", name="Compile and benchmark").click()
        wait_for_text(page, "Converted to BSR", 900_000, "pipeline-4-compile")
        no_exception(page)
        assert "block=1x1" in page.url  # unstructured magnitude: the hand-off chose 1x1 blocks
        page.get_by_text("12/12").first.wait_for(timeout=10_000)  # every encoder Linear became BSR
        screenshot(page, "pipeline-4-compile")

        click_link(page, "Compare these runs", "Compare")
        caption = page.get_by_text(re.compile(r"\d+ of \d+ runs"))
        caption.wait_for(timeout=60_000)
        shown = int(caption.inner_text().split()[0])
        assert shown >= 4  # store + PyTorch, TVM dense and TVM sparse, all under the library name
        assert pruned_name in page.get_by_test_id("stMultiSelect").nth(1).inner_text()
        page.get_by_text("One point per model").wait_for(timeout=30_000)  # the pruned model joined with its runs
        page.get_by_test_id("stDataFrame").last.wait_for(timeout=30_000)
        no_exception(page)
        screenshot(page, "pipeline-5-compare")

    from core.run_store import default_store

    runs = default_store().query(model=pruned_name)
    assert {r.kind for r in runs} >= {"store", "tvm"} and len(runs) == shown


def test_a_fresh_servers_first_request_to_a_sub_page_shows_the_apps_navigation(sparselab_home):
    with dashboard(sparselab_home) as url, chromium_page() as page:
        page.goto(f"{url}/compare")
        nav = page.get_by_test_id("stSidebarNav")
        nav.wait_for(timeout=60_000)
        page.get_by_role("heading", name="Compare", exact=True).wait_for(timeout=60_000)
        links = nav.get_by_role("link").all_inner_texts()
        titles = [text.split("\n")[-1].strip() for text in links]
        assert titles[:4] == ["Home", "Demo", "Library", "Prune"] and "Compare" in titles
        assert "app" not in titles and "compare" not in titles  # not the legacy pages/ navigation
        assert nav.locator("[data-testid='stIconMaterial']").count() == len(titles)  # with their icons
        screenshot(page, "deep-link-compare")
