"""The PACS page's screenshot (docs/pacs.md): a cxrkit Grad-CAM overlay as Orthanc's own web viewer shows it.

Starts a throwaway Orthanc, uploads one synthetic CR study, runs ``cxr pacs predict --cam`` on
it with a tiny model trained here (or ``--run``), opens the stored secondary capture in Orthanc
Explorer (its preview, rendered by Orthanc) in Debian's headless chromium through Playwright
(never ``playwright install``), and saves docs/images/pacs_overlay_orthanc.png.

    .venv/bin/python bench/pacs_screenshot.py [--run RUN_DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pacs_throughput import synthetic_study, tiny_run  # noqa: E402

from cxrkit.cli.main import main as cxr  # noqa: E402
from cxrkit.pacs.orthanc import LocalOrthanc  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "images" / "pacs_overlay_orthanc.png"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path)
    args = ap.parse_args()
    from dicomweb_client.api import DICOMwebClient
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, LocalOrthanc(Path(tmp) / "orthanc") as server:
        run = args.run or tiny_run(Path(tmp) / "model")
        DICOMwebClient(server.dicomweb).store_instances([synthetic_study(7, 512)])
        try:
            cxr(
                [
                    "pacs",
                    "predict",
                    str(run),
                    "--url",
                    server.dicomweb,
                    "--all-new",
                    "--cam",
                    "--state",
                    str(Path(tmp) / "state.json"),
                ]
            )
        except SystemExit as exc:
            assert not exc.code, exc.code
        found = requests.post(
            f"{server.url}/tools/find", json={"Level": "Instance", "Query": {"Modality": "OT"}}
        ).json()
        assert len(found) == 1, found
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1100, "height": 820})
            page.goto(f"{server.url}/app/explorer.html#instance?uuid={found[0]}")
            page.wait_for_selector("#instance-preview", state="visible")
            page.click("#instance-preview")
            page.wait_for_timeout(1500)
            OUT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(OUT))
            browser.close()
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
