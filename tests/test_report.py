"""ROOT/report.html of evaluation.aggregate: one self-contained page whose every figure is an inline PNG,
and which a browser renders from disk (headless Chromium, when installed)."""
import base64
import html.parser
import io
import os
import shutil
import subprocess
import tempfile

import pytest
from matplotlib import image as mpimg

from evaluation import aggregate, report
from test_aggregate import make_grid


class _Page(html.parser.HTMLParser):
    """The <img> sources, the <a>/<link>/<script> references and the text of a page."""
    def __init__(self):
        super().__init__()
        self.images, self.references, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        elif tag in ("link", "script", "iframe") or attrs.get("href"):
            self.references.append((tag, attrs))

    def handle_data(self, data):
        self.text.append(data)


def _parse(text):
    page = _Page()
    page.feed(text)
    return page


@pytest.fixture(scope="module")
def sweep_report(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("sweep"))
    make_grid(root)
    # The best reconstruction run (b1=0.1, b2=0.1) has the evaluation's RUN/figures/.
    best = os.path.join(root, "b1_0.1-b2_0.1", "figures")
    os.makedirs(best)
    for name in report.RUN_PICTURES:
        mpimg.imsave(os.path.join(best, f"{name}.png"), [[0.0, 1.0], [1.0, 0.0]], cmap="gray")
    paths = aggregate.aggregate(root)
    path = os.path.join(root, report.REPORT)
    assert path in paths
    with open(path) as f:
        return root, f.read()


def test_report_inlines_every_figure_as_a_decodable_png_and_fetches_nothing(sweep_report):
    root, text = sweep_report
    page = _parse(text)
    sweep_figures = [n for n in os.listdir(os.path.join(root, aggregate.FIGURES)) if n.endswith(".png")]
    assert len(page.images) == len(sweep_figures) + len(report.RUN_PICTURES)
    for src in page.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix), src[:60]
        data = base64.b64decode(src[len(prefix):], validate=True)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert mpimg.imread(io.BytesIO(data), format="png").size > 0
    assert page.references == []  # no style sheet, script or link to fetch


def test_report_names_best_points_violations_and_failures(sweep_report):
    _, text = sweep_report
    words = " ".join(" ".join(_parse(text).text).split())
    assert "10 points: 8 evaluated, 1 failed, 1 trained" in words
    # The known best points of the fabricated grid (tests/test_aggregate.py).
    assert "reconstruction PSNR, pooled MSE (dB) 19.2 highest b1_0.1-b2_0.1 z1=0.1, z2=0.1" in words
    assert "generation Inception-style score 8 highest b1_1-b2_1 z1=1, z2=1" in words
    assert "T2 (sample-based probes" in words and "flagged violated in 1 of 8 checked runs: b1_1-b2_0.1" in words
    assert "failed_point failed ValueError: the loss became NaN at epoch 2" in words
    assert "high_beta2/b1_10-b2_10 trained" in words
    assert "reconstruction: b1_0.1-b2_0.1 (z1=0.1, z2=0.1), reconstructions" in words  # the run's own figure
    assert "<th>rate_nats_z2</th>" in text and "<th>reconstruction_psnr_pooled_mse_db</th>" in text


def _chromium():
    return next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


CHECK_IMAGES = """
<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const bad = images.filter(i => !(i.complete && i.naturalWidth > 0)).length;
  document.title = `images ${images.length} rendered ${images.length - bad}`;
  document.body.setAttribute("data-checked", document.title);
});
</script>
"""


@pytest.mark.slow
def test_headless_chromium_renders_every_figure_of_the_report(sweep_report, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium to load report.html in (Debian: apt-get install -y chromium)")
    root, text = sweep_report
    page = tmp_path / "report_checked.html"  # the report and a script that counts the rendered images
    page.write_text(text.replace("</body>", CHECK_IMAGES + "</body>"))
    profile = tempfile.mkdtemp(dir=tmp_path)
    argv = [browser, "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()]
    if os.geteuid() == 0:
        argv.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    dom = subprocess.run(argv, capture_output=True, text=True, timeout=120).stdout
    expected = len(_parse(text).images)
    assert f'data-checked="images {expected} rendered {expected}"' in dom, dom[-2000:]
