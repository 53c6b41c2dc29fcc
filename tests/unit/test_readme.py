"""The README is the front door: its settings table must match the code."""

import re

from common.config import settings_table
from tests.support.servers import ROOT


def test_readme_settings_table_is_current():
    readme = (ROOT / "README.md").read_text()
    match = re.search(
        r"<!-- settings-table:start -->\n(.*?)\n<!-- settings-table:end -->", readme, re.S
    )
    assert match, "README.md lost its settings-table markers"
    assert match.group(1) == settings_table(), (
        "README settings table is stale: run `python -m common.ops.cli config docs`"
        " and paste it between the markers"
    )
