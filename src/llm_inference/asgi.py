"""The ASGI entry point Granian imports in its worker process: settings from the environment, then the app."""

from llm_inference.api.http.drain import GracefulDrain
from llm_inference.api.http.unread_body import CloseAfterUnreadBody
from llm_inference.app import create_app
from llm_inference.cli import settings_or_exit

settings = settings_or_exit()
litestar_app = create_app(settings)
# Outermost: it must see the final response headers of every refusal, GracefulDrain's included.
app = CloseAfterUnreadBody(GracefulDrain(litestar_app, litestar_app.state.service, settings.shutdown_grace_seconds))
