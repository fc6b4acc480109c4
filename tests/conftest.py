"One switch for slow tests: `@pytest.mark.slow` tests run only with AXOLOTL_NB_SLOW=1 (as the README says)."
import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.environ.get('AXOLOTL_NB_SLOW'): return
    skip = pytest.mark.skip(reason='slow: set AXOLOTL_NB_SLOW=1 to run it')
    for item in items:
        if 'slow' in item.keywords: item.add_marker(skip)
