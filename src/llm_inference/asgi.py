"""The ASGI entry point Granian imports in its worker process: settings from the environment, then the app."""

from llm_inference.app import create_app
from llm_inference.cli import settings_or_exit

app = create_app(settings_or_exit())
