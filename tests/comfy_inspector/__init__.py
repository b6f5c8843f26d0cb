"""A ComfyUI extension used only by the tests (linked into a temporary ComfyUI, never shipped with the pack).

ComfyUI 0.3.75 has no route listing the models its model management holds, so this adds one:
GET /reenact_tests/loaded_models → one entry per ``comfy.model_management.current_loaded_models`` item,
``{"module": <class of the patched nn.Module, "module.QualName">, "device": <load device>}``; and
GET /reenact_tests/threads → ``{"threads": torch.get_num_threads()}`` (POST ``{"threads": N}`` sets it first), to
check that the pack leaves ComfyUI's threading alone.

It also counts generator passes, to see how much work a run does after an interrupt:
POST /reenact_tests/generator_passes (re)starts the count (wrapping ``Generator.synthesize`` the first time, once the
pack has made ``reenact_core`` importable); GET /reenact_tests/generator_passes →
``{"passes": <passes finished since the start>, "after_interrupt": <those that finished while ComfyUI's interrupt
flag was set>}``. A render window or a tuning step is one generator pass.

GET /reenact_tests/startup_modules → the sorted names of the ``reenact_core`` modules imported when the server
started (every custom node loaded, no request answered yet).
"""
import sys

import comfy.model_management as mm
import torch
from aiohttp import web
from server import PromptServer

NODE_CLASS_MAPPINGS: dict = {}

_passes = {"passes": 0, "after_interrupt": 0}
_startup_modules: list[str] = []


async def _record_startup_modules(app) -> None:
    _startup_modules[:] = sorted(name for name in sys.modules if name.split(".")[0] == "reenact_core")


PromptServer.instance.app.on_startup.append(_record_startup_modules)


@PromptServer.instance.routes.get("/reenact_tests/startup_modules")
async def startup_modules(request):
    return web.json_response(_startup_modules)


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


def _count_generator_passes() -> None:
    from reenact_core.models.stylegan2 import Generator

    synthesize = Generator.synthesize
    if getattr(synthesize, "counted", False):
        return

    def counted(self, *args, **kwargs):
        result = synthesize(self, *args, **kwargs)
        _passes["passes"] += 1
        _passes["after_interrupt"] += bool(mm.processing_interrupted())
        return result

    counted.counted = True
    Generator.synthesize = counted


@PromptServer.instance.routes.post("/reenact_tests/generator_passes")
async def start_counting(request):
    _count_generator_passes()
    _passes.update(passes=0, after_interrupt=0)
    return web.json_response(_passes)


@PromptServer.instance.routes.get("/reenact_tests/generator_passes")
async def generator_passes(request):
    return web.json_response(_passes)
