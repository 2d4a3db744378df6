"""Autobahn|Testsuite fuzzing client against the real daemon: zero FAILED, zero NON-STRICT.

CI runs cases 1-7, 9 and 10 (301 cases, about 20 s here); set ``WSDAEMON_AUTOBAHN_CASES``
to run another selection, as the README shows.
"""

import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CASES = "1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*"
RUN_SH = REPO.parent / "shared" / "tools" / "autobahn" / "run.sh"
CASES = os.environ.get("WSDAEMON_AUTOBAHN_CASES", DEFAULT_CASES)


def test_autobahn_fuzzingclient(daemon_factory, tmp_path):
    assert RUN_SH.exists(), f"Autobahn tools not found at {RUN_SH} (shared/ must sit beside the repo)"
    d = daemon_factory(
        "--max-message-size", "16777216", "--log-level", "warning", app="wsdaemon.apps.echo:app"
    )
    env = dict(os.environ)
    env.setdefault("AUTOBAHN_VENV", str(Path.home() / ".cache" / "wsdaemon-autobahn"))
    result = subprocess.run(
        ["bash", str(RUN_SH), "127.0.0.1", str(d.port), str(tmp_path / "report"), CASES],
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
    )
    print(result.stdout[-3000:], result.stderr[-2000:])
    assert result.returncode == 0, result.stderr
    summary = re.search(r"^autobahn: (.*)$", result.stdout, re.M)
    assert summary, result.stdout
    counts = dict(re.findall(r"([A-Z-]+)=(\d+)", summary.group(1)))
    assert sum(map(int, counts.values())) >= 301 or CASES != DEFAULT_CASES, "not all cases ran"
    assert counts["FAILED"] == "0", summary.group(0)
    assert counts["NON-STRICT"] == "0", summary.group(0)
    assert d.alive()
