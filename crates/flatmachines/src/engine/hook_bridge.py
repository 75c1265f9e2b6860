"""paper-runner's Python hook bridge.

The runner starts this file (as `python -c SOURCE FILE CLASS CAP`) once per
`--hooks NAME=python:FILE:CLASS` binding. It imports the user's hooks class
and serves its methods over a line-delimited JSON protocol:

  stdin  (runner -> bridge): one request per line
    {"op": "call", "id": 7, "event": "action", "state": "s", "action": "a",
     "context": {...}, "output": ..., "error": {"kind", "message"},
     "args": {...}, "tool": {"name", "id", "arguments"}}
    {"op": "cancel", "id": 7}
    {"op": "ping", "id": 8}
  stdout (bridge -> runner): one reply per line
    {"ready": true, "python": "3.11.7", "stand_in": false}   (first line)
    {"id": 7, "ok": true, "set": {...}, "unset": [...], "output": ...,
     "next_state": "s"}
    {"id": 7, "ok": false, "error": {"type": "ValueError", "message": "..."}}

Every request runs as its own asyncio task, so a slow hook of one execution
does not hold up the others; `async def` hooks are awaited, plain ones are
called on the loop (as the SDK does). The context the hook returns (or
changed in place) is sent back as a difference: keys set and keys removed.

If the SDK (`flatmachines`, `flatagents`) is not installed, minimal
stand-in modules with the same hook base classes are provided so that
hooks written for the SDK import unchanged. Anything the hooks print goes
to stderr: stdout carries only the protocol.

Written for paper-runner; needs only the Python standard library.
"""

import asyncio
import copy
import importlib
import importlib.util
import json
import logging
import math
import os
import sys
import threading
import traceback
import types

PROTOCOL_VERSION = 1


# ---------------------------------------------------------------------------
# The protocol channel. fd 1 is moved aside before any user code runs, and
# fd 1 / sys.stdout then point at stderr, so a print() in a hook cannot
# corrupt the protocol.
# ---------------------------------------------------------------------------

_PROTO = os.fdopen(os.dup(1), "wb", buffering=0)
os.dup2(2, 1)
sys.stdout = sys.stderr


def _clean(value):
    """A JSON-safe copy: non-finite floats become None, sets and tuples
    lists, dict keys strings, anything else unknown its str()."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_clean(v) for v in value]
    if isinstance(value, types.MappingProxyType):
        return {str(k): _clean(v) for k, v in value.items()}
    return str(value)


def _encode(obj):
    try:
        text = json.dumps(obj, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        text = json.dumps(_clean(obj), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8", "replace") + b"\n"


class _Out:
    def __init__(self, cap):
        self.cap = cap
        self.lock = threading.Lock()

    def send(self, obj):
        data = _encode(obj)
        if len(data) > self.cap and "id" in obj:
            data = _encode(
                {
                    "id": obj["id"],
                    "ok": False,
                    "error": {
                        "type": "OutputTooLarge",
                        "kind": "output_too_large",
                        "message": "the hook's reply is %d bytes, over the cap of %d"
                        % (len(data), self.cap),
                    },
                }
            )
        with self.lock:
            _PROTO.write(data)


# ---------------------------------------------------------------------------
# Stand-ins for the SDK's modules, used only when the SDK is not installed.
# ---------------------------------------------------------------------------


def _stand_in_modules():
    fm = types.ModuleType("flatmachines")
    fm.__version__ = "0+paper-runner-bridge"
    fm.__path__ = []  # a package, so `flatmachines.hooks` imports

    def get_logger(name=None):
        return logging.getLogger(name or "flatmachines")

    def setup_logging(level=logging.INFO, **_kwargs):
        logging.basicConfig(level=level, stream=sys.stderr)

    class MachineHooks:
        """Base class: every callback passes its value through unchanged."""

        def on_machine_start(self, context):
            return context

        def on_machine_end(self, context, final_output):
            return final_output

        def on_state_enter(self, state_name, context):
            return context

        def on_state_exit(self, state_name, context, output):
            return output

        def on_transition(self, from_state, to_state, context):
            return to_state

        def on_error(self, state_name, error, context):
            return None

        def on_action(self, state_name, action_name, context):
            get_logger(__name__).warning(
                "no handler for action %r in state %r", action_name, state_name
            )
            return context

        def on_tool_calls(self, state_name, tool_calls, context):
            return context

        def on_tool_result(self, state_name, tool_result, context):
            return context

        def on_agent_stream_event(self, state_name, event, context):
            return None

        def get_tool_provider(self, state_name):
            return None

    class LoggingHooks(MachineHooks):
        """Logs each callback at `log_level`."""

        def __init__(self, log_level=logging.INFO):
            self.log_level = log_level
            self._log = get_logger("flatmachines.hooks")

        def on_machine_start(self, context):
            self._log.log(self.log_level, "machine started")
            return context

        def on_machine_end(self, context, final_output):
            self._log.log(self.log_level, "machine ended: %s", final_output)
            return final_output

        def on_state_enter(self, state_name, context):
            self._log.log(self.log_level, "enter %s", state_name)
            return context

        def on_state_exit(self, state_name, context, output):
            self._log.log(self.log_level, "exit %s", state_name)
            return output

        def on_transition(self, from_state, to_state, context):
            self._log.log(self.log_level, "%s -> %s", from_state, to_state)
            return to_state

        def on_action(self, state_name, action_name, context):
            self._log.log(self.log_level, "action %s in %s", action_name, state_name)
            return context

    class MetricsHooks(MachineHooks):
        """Counts states entered, transitions and errors."""

        def __init__(self):
            self.state_counts = {}
            self.transition_counts = {}
            self.total_states_executed = 0
            self.error_count = 0

        def on_state_enter(self, state_name, context):
            self.state_counts[state_name] = self.state_counts.get(state_name, 0) + 1
            self.total_states_executed += 1
            return context

        def on_transition(self, from_state, to_state, context):
            key = "%s->%s" % (from_state, to_state)
            self.transition_counts[key] = self.transition_counts.get(key, 0) + 1
            return to_state

        def on_error(self, state_name, error, context):
            self.error_count += 1
            return None

        def get_metrics(self):
            return {
                "state_counts": dict(self.state_counts),
                "transition_counts": dict(self.transition_counts),
                "total_states_executed": self.total_states_executed,
                "error_count": self.error_count,
            }

    class CompositeHooks(MachineHooks):
        """Chains several hooks; each sees the previous one's result."""

        def __init__(self, *hooks):
            self.hooks = list(hooks)

        async def on_machine_start(self, context):
            for h in self.hooks:
                context = await _maybe_await(h.on_machine_start(context))
            return context

        async def on_machine_end(self, context, final_output):
            for h in self.hooks:
                final_output = await _maybe_await(h.on_machine_end(context, final_output))
            return final_output

        async def on_state_enter(self, state_name, context):
            for h in self.hooks:
                context = await _maybe_await(h.on_state_enter(state_name, context))
            return context

        async def on_state_exit(self, state_name, context, output):
            for h in self.hooks:
                output = await _maybe_await(h.on_state_exit(state_name, context, output))
            return output

        async def on_error(self, state_name, error, context):
            for h in self.hooks:
                r = await _maybe_await(h.on_error(state_name, error, context))
                if r is not None:
                    return r
            return None

        async def on_action(self, state_name, action_name, context):
            for h in self.hooks:
                context = await _maybe_await(h.on_action(state_name, action_name, context))
            return context

    class HooksRegistry:
        """Name -> hooks factory, as the SDK's registry."""

        def __init__(self):
            self._factories = {}

        def register(self, name, factory):
            self._factories[name] = factory

        def has(self, name):
            return name in self._factories

        def resolve(self, ref):
            if isinstance(ref, list):
                return CompositeHooks(*[self.resolve(r) for r in ref])
            if isinstance(ref, dict):
                name, args = ref.get("name"), ref.get("args") or {}
            else:
                name, args = ref, {}
            if name not in self._factories:
                raise KeyError("no hooks registered as %r" % (name,))
            return self._factories[name](**args)

    class RetryableError(Exception):
        """An error the runtime may retry."""

        def __init__(self, error=None):
            self.error = error
            if isinstance(error, dict):
                super().__init__(error.get("message", str(error)))
            else:
                super().__init__(error)

    hooks_mod = types.ModuleType("flatmachines.hooks")
    for name, obj in [
        ("MachineHooks", MachineHooks),
        ("LoggingHooks", LoggingHooks),
        ("MetricsHooks", MetricsHooks),
        ("CompositeHooks", CompositeHooks),
        ("HooksRegistry", HooksRegistry),
    ]:
        setattr(hooks_mod, name, obj)
        setattr(fm, name, obj)
    fm.hooks = hooks_mod
    fm.RetryableError = RetryableError
    fm.get_logger = get_logger
    fm.setup_logging = setup_logging

    monitoring = types.ModuleType("flatmachines.monitoring")
    monitoring.get_logger = get_logger
    monitoring.setup_logging = setup_logging
    fm.monitoring = monitoring

    fa = types.ModuleType("flatagents")
    fa.__version__ = fm.__version__
    fa.__path__ = []
    fa.get_logger = get_logger
    fa.setup_logging = setup_logging

    class ToolResult:
        """What a tool returns: text content and whether it failed."""

        def __init__(self, content="", is_error=False):
            self.content = content
            self.is_error = is_error

    tools = types.ModuleType("flatagents.tools")
    tools.ToolResult = ToolResult
    fa.tools = tools
    fm.ToolResult = ToolResult

    # Any other name the hooks import from the SDK resolves to a placeholder
    # that says what is missing when it is used, so a module that imports
    # more of the SDK than its hooks use still loads.
    def _placeholder_getattr(module_name):
        def __getattr__(name):
            if name.startswith("__"):
                raise AttributeError(name)

            class _Missing:
                def __init__(self, *args, **kwargs):
                    raise NotImplementedError(
                        "%s.%s is part of the FlatMachines SDK, which is not installed; "
                        "the paper-runner hook bridge provides only the hook base classes"
                        % (module_name, name)
                    )

            _Missing.__name__ = name
            return _Missing

        return __getattr__

    for mod in (fm, hooks_mod, monitoring, fa, tools):
        mod.__getattr__ = _placeholder_getattr(mod.__name__)

    return {
        "flatmachines": fm,
        "flatmachines.hooks": hooks_mod,
        "flatmachines.monitoring": monitoring,
        "flatagents": fa,
        "flatagents.tools": tools,
    }


def _install_sdk_or_stand_in():
    """True when the stand-in modules were installed."""
    try:
        importlib.import_module("flatmachines")
        return False
    except ImportError:
        pass
    except Exception as e:  # an installed SDK that fails to import
        sys.stderr.write("hook bridge: the flatmachines SDK failed to import (%s); "
                         "using the bridge's stand-in modules\n" % (e,))
    for name, mod in _stand_in_modules().items():
        sys.modules[name] = mod
    return True


async def _maybe_await(value):
    if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
        return await value
    return value


# ---------------------------------------------------------------------------
# Loading the user's class.
# ---------------------------------------------------------------------------


def _load_class(path, class_name):
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError("hooks file not found: %s" % path)
    directory, filename = os.path.split(path)
    stem = os.path.splitext(filename)[0]
    # A file inside a package is imported under its dotted name, so its
    # relative imports work and the package is imported once.
    parts = [stem]
    root = directory
    while os.path.isfile(os.path.join(root, "__init__.py")):
        root, pkg = os.path.split(root)
        parts.insert(0, pkg)
    if root not in sys.path:
        sys.path.insert(0, root)
    if len(parts) > 1:
        module = importlib.import_module(".".join(parts))
    else:
        spec = importlib.util.spec_from_file_location(stem, path)
        if spec is None or spec.loader is None:
            raise ImportError("cannot import %s" % path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[stem] = module
        spec.loader.exec_module(module)
    cls = getattr(module, class_name, None)
    if cls is None:
        raise AttributeError("%s has no class %r" % (path, class_name))
    return cls


# ---------------------------------------------------------------------------
# Serving calls.
# ---------------------------------------------------------------------------


class HookFailure(RuntimeError):
    """The runner's error for a failed state, as passed to `on_error`."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind
        self.message = message


def _diff(before, after):
    if not isinstance(after, dict):
        raise TypeError("the hook returned %s, not a context dict" % type(after).__name__)
    changed = {}
    for k, v in after.items():
        if k not in before or before[k] != v:
            changed[str(k)] = v
    removed = [k for k in before if k not in after]
    return changed, removed


class Bridge:
    def __init__(self, cls, out):
        self.cls = cls
        self.out = out
        self.instances = {}
        self.tasks = {}

    def instance(self, args):
        key = json.dumps(args or {}, sort_keys=True)
        inst = self.instances.get(key)
        if inst is None:
            inst = self.cls(**(args or {}))
            self.instances[key] = inst
        return inst

    async def call(self, req):
        hooks = self.instance(req.get("args"))
        event = req.get("event")
        state = req.get("state")
        ctx = req.get("context") or {}
        before = copy.deepcopy(ctx)
        reply = {}
        if event == "action":
            r = await _maybe_await(hooks.on_action(state, req.get("action"), ctx))
            ctx = r if r is not None else ctx
        elif event == "state_enter":
            r = await _maybe_await(hooks.on_state_enter(state, ctx))
            ctx = r if r is not None else ctx
        elif event == "state_exit":
            # The SDK discards what on_state_exit returns; changes the hook
            # made to the context in place stay.
            await _maybe_await(hooks.on_state_exit(state, ctx, req.get("output")))
        elif event == "machine_start":
            r = await _maybe_await(hooks.on_machine_start(ctx))
            ctx = r if r is not None else ctx
        elif event == "machine_end":
            out = req.get("output")
            r = await _maybe_await(hooks.on_machine_end(ctx, out))
            reply["output"] = out if r is None else r
        elif event == "error":
            err = req.get("error") or {}
            exc = HookFailure(err.get("kind", "action_error"), err.get("message", ""))
            r = await _maybe_await(hooks.on_error(state, exc, ctx))
            if r is not None:
                if not isinstance(r, str):
                    raise TypeError("on_error returned %s, not a state name" % type(r).__name__)
                reply["next_state"] = r
        elif event in ("tool_calls", "tool_result"):
            method = getattr(hooks, "on_" + event, None)
            if method is not None:
                r = await _maybe_await(method(state, req.get("output"), ctx))
                ctx = r if isinstance(r, dict) else ctx
        elif event == "tool":
            tool = req.get("tool") or {}
            get = getattr(hooks, "get_tool_provider", None)
            provider = get(state) if get is not None else None
            if provider is None:
                raise LookupError("the hooks give no tool provider for state %r" % (state,))
            r = await _maybe_await(
                provider.execute_tool(tool.get("name"), tool.get("id"), tool.get("arguments") or {})
            )
            content = getattr(r, "content", r)
            if not isinstance(content, str):
                content = json.dumps(_clean(content), ensure_ascii=False)
            reply["tool_result"] = {
                "content": content,
                "is_error": bool(getattr(r, "is_error", False)),
            }
        elif event == "tool_definitions":
            get = getattr(hooks, "get_tool_provider", None)
            provider = get(state) if get is not None else None
            defs = []
            if provider is not None and hasattr(provider, "get_tool_definitions"):
                defs = await _maybe_await(provider.get_tool_definitions()) or []
            reply["tool_definitions"] = defs
        else:
            raise ValueError("unknown hook event %r" % (event,))
        changed, removed = _diff(before, ctx)
        reply["set"] = changed
        reply["unset"] = removed
        return reply

    async def serve_one(self, req):
        rid = req.get("id")
        try:
            reply = await self.call(req)
            reply["id"] = rid
            reply["ok"] = True
        except asyncio.CancelledError:
            reply = {"id": rid, "ok": False,
                     "error": {"type": "CancelledError", "message": "cancelled by the runner"}}
        except BaseException as e:  # a hook's failure is the state's error
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                msg = "the hook tried to exit the bridge (%s)" % type(e).__name__
            else:
                msg = str(e)
            tb = traceback.format_exception(type(e), e, e.__traceback__)
            reply = {"id": rid, "ok": False,
                     "error": {"type": type(e).__name__, "message": msg,
                               "traceback": "".join(tb[-6:])}}
        finally:
            self.tasks.pop(rid, None)
        self.out.send(reply)

    def dispatch(self, line):
        try:
            req = json.loads(line)
        except ValueError as e:
            sys.stderr.write("hook bridge: bad request line: %s\n" % e)
            return
        op = req.get("op")
        if op == "call":
            task = asyncio.ensure_future(self.serve_one(req))
            self.tasks[req.get("id")] = task
        elif op == "cancel":
            task = self.tasks.get(req.get("id"))
            if task is not None:
                task.cancel()
        elif op == "ping":
            self.out.send({"id": req.get("id"), "ok": True, "pong": True})


def _reader(loop, queue):
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()
        loop.call_soon_threadsafe(queue.put_nowait, line)
        if not line:
            return


async def _main(path, class_name, cap):
    out = _Out(cap)
    stand_in = _install_sdk_or_stand_in()
    try:
        cls = _load_class(path, class_name)
    except BaseException as e:
        tb = traceback.format_exception(type(e), e, e.__traceback__)
        out.send({"ready": False, "protocol": PROTOCOL_VERSION,
                  "error": {"type": type(e).__name__, "message": str(e),
                            "traceback": "".join(tb[-6:])}})
        return
    bridge = Bridge(cls, out)
    out.send({"ready": True, "protocol": PROTOCOL_VERSION,
              "python": "%d.%d.%d" % sys.version_info[:3], "stand_in": stand_in})
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()
    threading.Thread(target=_reader, args=(loop, queue), daemon=True).start()
    while True:
        line = await queue.get()
        if not line:
            break
        bridge.dispatch(line)
    # stdin closed: the runner is gone or done with us.
    for task in list(bridge.tasks.values()):
        task.cancel()


def main():
    args = sys.argv[1:]
    if len(args) != 3:
        sys.stderr.write("usage: hook_bridge FILE CLASS MAX_REPLY_BYTES\n")
        return 2
    path, class_name, cap = args[0], args[1], int(args[2])
    asyncio.run(_main(path, class_name, cap))
    return 0


if __name__ == "__main__":
    sys.exit(main())
