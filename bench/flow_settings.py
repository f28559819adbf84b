"""The settings bench/flow.py serves: the test settings (DEBUG off), with one bare view beside the site."""

from tests.settings import *  # noqa: F401,F403

ROOT_URLCONF = "bench.flow_urls"
# The static files as the tests serve them, found once at start-up, not on every request.
WHITENOISE_AUTOREFRESH = False
