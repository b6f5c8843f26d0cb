"""A ComfyUI extension used only by the tests (linked into a temporary ComfyUI, never shipped with the pack).

ComfyUI 0.3.75 has no route listing the models its model management holds, so this adds one:
GET /reenact_tests/loaded_models → one entry per ``comfy.model_management.current_loaded_models`` item,
``{"module": <class of the patched nn.Module, "module.QualName">, "device": <load device>}``; and
GET /reenact_tests/threads → ``{"threads": torch.get_num_threads()}`` (POST ``{"threads": N}`` sets it first), to
check that the pack leaves ComfyUI's threading alone.
"""
import comfy.model_management as mm
import torch
from aiohttp import web
from server import PromptServer

NODE_CLASS_MAPPINGS: dict = {}


@PromptServer.instance.routes.get("/reenact_tests/loaded_models")
async def loaded_models(request):
    entries = []
    for loaded in list(mm.current_loaded_models):
        patcher = loaded.model
        if patcher is None:   # a model already garbage-collected, not yet swept from the list
            continue
        module = type(patcher.model)
        entries.append({"module": f"{module.__module__}.{module.__qualname__}", "device": str(loaded.device)})
    return web.json_response(entries)


@PromptServer.instance.routes.get("/reenact_tests/threads")
async def threads(request):
    return web.json_response({"threads": torch.get_num_threads()})


@PromptServer.instance.routes.post("/reenact_tests/threads")
async def set_threads(request):
    torch.set_num_threads(int((await request.json())["threads"]))
    return web.json_response({"threads": torch.get_num_threads()})
