"""The ASGI entry point Granian imports in its worker process: settings from the environment, then the app."""

from llm_inference.app import create_app
from llm_inference.cli import settings_or_exit
from llm_inference.drain import GracefulDrain

settings = settings_or_exit()
litestar_app = create_app(settings)
app = GracefulDrain(litestar_app, litestar_app.state.service, settings.shutdown_grace_seconds)
