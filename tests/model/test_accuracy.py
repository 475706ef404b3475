"""Dev-set accuracy guard: `maskmaker bench accuracy` on ../shared/data/dev at confidence 0.3 / iou 0.45."""
import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("MASKMAKER_SHARED", ROOT.parent / "shared"))
BIN = os.environ.get("MASKMAKER_BIN", str(ROOT / "build" / "maskmaker"))


def test_dev_set_accuracy(tmp_path):
    summary = tmp_path / "summary.json"
    out = subprocess.run(
        [BIN, "bench", "accuracy", "--manifest", str(SHARED / "data/dev/manifest.jsonl"),
         "--out", str(tmp_path / "masks"), "--confidence-thresh", "0.3", "--iou-thresh", "0.45",
         "--json", str(summary)],
        capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr
    print(out.stdout)
    s = json.loads(summary.read_text())
    assert s["rows"] == 199 and s["positive_rows"] == 171 and s["negative_rows"] == 28
    assert s["miou_positive"] >= 0.48, s
    assert s["negatives_empty"] >= 0.95, s
    # Every row has its predicted mask on disk, named as score.py expects.
    rows = [json.loads(line) for line in (SHARED / "data/dev/manifest.jsonl").read_text().splitlines() if line.strip()]
    for row in rows:
        assert (tmp_path / "masks" / Path(row["mask"]).name).is_file()
