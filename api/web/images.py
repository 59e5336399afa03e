"""Images in the web app: uploads on prompt pages, and showing a message's images.

A prompt or prompter-reply page posts its form as multipart with up to
``max_images_per_message`` files under ``images``; each is sanitised and stored exactly
as ``POST /api/v1/images`` does (api.http.images.uploads, the web client as uploader)
and the answer's command records them with the message. A refused file refuses the
whole answer before anything is recorded (the page shows why).

``GET /images/{message_id}/{image_id}`` serves an image to a signed-in person while its
message is not deleted: the web app shows people every tree's messages in tasks and
the tree view, so being signed in is what "may see the message" means here.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from starlette.datastructures import UploadFile
from starlette.responses import Response
from starlette.routing import Route

from api.http.images import image_headers, message_images, refused, uploads
from api.storage.image_codec import ImageRefused
from api.web.site import Ctx, Site
from domain.model.errors import ImageNotFoundError, InvalidImageError
from domain.model.images import ImageRef
from domain.model.tree import ConversationTree


def from_form(ctx: Ctx) -> list[ImageRef]:
    """In the threadpool: the form's image files, sanitised and stored (none: [])."""
    if ctx.form is None:
        return []
    files = [f for f in ctx.form.getlist("images") if isinstance(f, UploadFile) and f.filename]
    if not files:
        return []
    service, client_id = ctx.site.service, ctx.site.client_id
    assert client_id is not None, "the site is started"
    limit = service.app.config.max_images_per_message
    if len(files) > limit:
        raise InvalidImageError(f"at most {limit} images per message, not {len(files)}")
    store = uploads(service)
    refs = []
    for f in files:
        if f.size is not None and f.size > store.limits.max_bytes:
            raise InvalidImageError(f"{f.filename}: larger than {store.limits.max_bytes} bytes")
        try:
            ticket = store.upload(f.file.read(store.limits.max_bytes + 1), client_id)
        except ImageRefused as e:
            raise InvalidImageError(f"{f.filename}: {refused(e).message}") from None
        refs.append(ticket.ref())
    return refs


def shown(ctx: Ctx, tree_id: UUID | None) -> dict[str, list[dict[str, Any]]]:
    """In the threadpool: message id -> its images (live messages only), for the
    ``_images.html`` partial."""
    if tree_id is None:
        return {}
    return {
        str(message_id): [image_view(r) for r in refs]
        for message_id, refs in message_images(ctx.site.service, tree_id).items()
    }


async def for_task(ctx: Ctx, tree_id: UUID | None) -> dict[str, list[dict[str, Any]]]:
    return await ctx.site.blocking(shown, ctx, tree_id) if tree_id is not None else {}


def image_view(ref: ImageRef) -> dict[str, Any]:
    return {"id": str(ref.id), "width": ref.width, "height": ref.height}


def _serve(ctx: Ctx, message_id: UUID, image_id: UUID) -> Response:
    app = ctx.site.service.app
    tree_id = app.tree_of_message(message_id)

    def view(tree: ConversationTree) -> ImageRef | None:
        m = tree.messages.get(message_id)
        if m is None or m.deleted:
            return None
        return next((i for i in m.images if i.id == image_id), None)

    ref = app.view_tree(tree_id, view)
    if ref is None:
        raise ImageNotFoundError(f"image {image_id} not found")
    try:
        data = uploads(ctx.site.service).blobs.read(ref.sha256)
    except FileNotFoundError:
        raise ImageNotFoundError(f"image {image_id} not found") from None
    return Response(data, media_type=ref.media_type, headers=image_headers(ref))


async def serve(ctx: Ctx) -> Response:
    params = ctx.request.path_params
    try:
        message_id, image_id = UUID(params["message_id"]), UUID(params["image_id"])
    except ValueError:
        raise ImageNotFoundError("image not found") from None
    return await ctx.site.blocking(_serve, ctx, message_id, image_id)


def routes(site: Site) -> list[Route]:
    return [Route("/images/{message_id}/{image_id}", site.page(serve), methods=["GET"])]
