"""Who holds the PyTorch tensors a trial left alive: a census the tracer takes at trial ends
(`memwarden run --trace-python`), only in a process that imported torch itself.

PyTorch's CPU allocator never reports to tracemalloc, so a tensor kept per trial is invisible
to the line tracer. Tensors are GC-tracked Python objects, though: at a trial's end the census
lists the live ones (`gc.get_objects()`), counts each storage once (a small view pins its whole
base), and for the storages new since the last census walks referrers up to a root (a module
global, a class attribute, a closure, a running frame's local). A storage keeps the holder it
was first found under, so each report gives, per holder, the bytes it holds now: cumulative,
and the analysis fits their growth per trial as it does the verdicts.

Two mechanisms are named where they hold the memory: a tensor with a `grad_fn` keeps its whole
autograd graph, whose saved tensors are C++ objects the census cannot list, so it walks the
graph's saved tensors (`history.append(loss)` instead of `loss.item()`); and a view whose base
is much larger than itself (`view_bytes`).
"""

import gc
import os
import sys
import time
import types

# Storages smaller than this are not walked (their holders would cost more than they say);
# a tensor with a grad_fn is walked at any size, since its graph may hold far more.
MIN_WALKED = 64 << 10
# At most this many new tensors walked per census, largest first.
MAX_WALKED = 200
# Referrer levels climbed from a tensor to a root.
MAX_DEPTH = 6
# Objects climbed from at once, per level.
MAX_FRONTIER = 64
# Autograd nodes visited per graph.
MAX_NODES = 20000
TOP_HOLDERS = 20
# Censuses in a row before their cost is weighed, and the most trials left without one.
STRETCH = 4
MAX_GAP = 100
GRADIENTS = "(.grad of parameters)"
UNKNOWN = "(no root found: held from C code, or garbage in a reference cycle)"


def _describe(obj):
    return type(obj).__name__


class Census:
    def __init__(self, here, budget):
        self.here = here
        self.budget = budget
        self.costs = []
        self.trial_s = []
        self.in_stretch = 0
        self.known = {}  # storage key -> holder path
        self.graph = {}  # storage key of a tensor with a grad_fn -> bytes its graph holds
        self.holders = {}  # path -> (container type, place)
        self.first = True
        self.saved_names = {}  # autograd node type -> its `_saved_*` attributes
        self.skip_left = 0
        self.views = {}  # storage key -> bytes of it a smaller view pins
        self.via_graph = set()  # storage keys kept only through an autograd graph
        self.before = set()

    def take(self, trial, trial_s, every=False):
        """The census record for this trial's end, or None (no torch, or skipped for cost);
        `every`: the tracer's diagnosis schedules it, not the census's budget."""
        torch = sys.modules.get("torch")
        tensor_type = getattr(torch, "Tensor", None)
        if tensor_type is None:
            return None
        if every:
            self.skip_left = 0
            self.in_stretch = 0
        elif self.skip_left > 0:
            self.skip_left -= 1
            return None
        begun = time.perf_counter()
        live = self.live(tensor_type)
        # (storage key, the tensors on it) for the storages no census has seen.
        new = [(key, on) for key, on in live.items() if key not in self.known and key not in self.before]
        if self.first:
            # What was alive before the first trial ended is the set-up's (model, data): never
            # walked, never a trial's.
            self.first = False
            self.before = set(live)
            new = []
        if new:
            # Gradients are held by their parameter from C++ (no referrer to climb): named,
            # not walked.
            for key, on in live.items():
                for t in on:
                    if t.requires_grad and t.is_leaf and t.grad is not None:
                        grad = self.key_of(t.grad)
                        if grad not in self.known and grad not in self.before:
                            self.known[grad] = GRADIENTS
                            self.holders.setdefault(GRADIENTS, ("tensor", "attribute"))
            new = [(key, on) for key, on in new if key not in self.known]
        walked = self.walk(new, torch) if new else 0
        if any(self.known.get(key) == UNKNOWN for key, _ in new):
            # Tensors no root holds may be garbage in a reference cycle: collected, they are
            # gone from this census (a collection costs 40-50 ms with PyTorch loaded, so only
            # then).
            gc.collect()
            live = self.live(tensor_type)
        record = self.record(trial, live)
        cost = time.perf_counter() - begun
        record["cost_ms"] = round(cost * 1e3, 3)
        record["walked"] = walked
        # Censuses come in stretches of consecutive trials (a trial's increment is what the
        # parameter analysis needs); after each stretch, as many trials without one as keep
        # the census's cost within its budget of the trials' time.
        self.costs.append(cost)
        if trial_s:
            self.trial_s.append(trial_s)
        self.in_stretch += 1
        if self.in_stretch >= STRETCH and self.trial_s:
            self.in_stretch = 0
            mean = lambda values: sum(values[-16:]) / len(values[-16:])
            share = mean(self.costs) / max(mean(self.trial_s), 1e-6)
            if share > self.budget:
                self.skip_left = min(MAX_GAP, int(STRETCH * share / self.budget - STRETCH + 0.999))
        return record

    def live(self, tensor_type):
        """Storage key -> the tensors on it (the first with the largest own size first)."""
        by_storage = {}
        # By type, never isinstance: that reads `__class__`, which some objects turn into a
        # property that warns (torch.distributed.reduce_op) or does work. Every tensor type is a
        # subclass of torch.Tensor, so the set of them is known at each census.
        kinds = {tensor_type}
        stack = [tensor_type]
        while stack:
            for sub in stack.pop().__subclasses__():
                if sub not in kinds:
                    kinds.add(sub)
                    stack.append(sub)
        objects = gc.get_objects()
        try:
            for obj in [o for o in objects if type(o) in kinds]:
                try:
                    key = self.key_of(obj)
                except Exception:
                    continue  # sparse, meta, or a subclass without a storage
                if key[1] == 0:
                    continue
                by_storage.setdefault(key, []).append(obj)
        finally:
            del objects
        return by_storage

    def walk(self, new, torch):
        """Names the holder of each new storage (`(key, tensors)`, largest first), and the
        graph it keeps."""
        def own(t):
            try:
                return t.numel() * t.element_size()
            except Exception:
                return 0

        candidates = []
        for key, tensors in new:
            graph = any(getattr(t, "grad_fn", None) is not None for t in tensors)
            if key[2] >= MIN_WALKED or graph:
                candidates.append((key, tensors))
        candidates.sort(key=lambda c: -c[0][2])
        candidates = candidates[:MAX_WALKED]
        if not candidates:
            return 0
        # The graphs first: their saved tensors may be Python objects too (an input the
        # worker deleted), found below with no root of their own; they are the graph's.
        graphs = {}
        for key, tensors in candidates:
            with_graph = [t for t in tensors if getattr(t, "grad_fn", None) is not None]
            if with_graph:
                graphs[key] = self.graph_storages(with_graph, torch)
        saved_keys = set().union(*graphs.values()) if graphs else set()
        walked = [(key, tensors) for key, tensors in candidates if key not in saved_keys or key in graphs]
        targets = {id(t): key for key, tensors in walked for t in tensors}
        ours = {id(new), id(candidates), id(graphs), id(walked)}
        ours |= {id(x) for x in new} | {id(on) for _, on in new} | {id(c) for c in candidates}
        paths = self.roots([t for _, tensors in walked for t in tensors], targets, ours)
        unrooted = [key for key, _ in candidates if key in saved_keys and key not in graphs]
        for key, tensors in walked:
            held = next((t for t in tensors if id(t) in paths), None)
            if held is None:
                unrooted.append(key)
                continue
            path = paths[id(held)]
            self.known[key] = path[0]
            self.holders.setdefault(path[0], (path[1], path[2]))
            size = own(held)
            if size * 2 <= key[2]:
                self.views[key] = key[2] - size
        for owner, saved in graphs.items():
            holder = self.known.get(owner)
            if holder is None:
                continue
            # Saved tensors with no Python object, or whose object has no root but the graph.
            self.graph[owner] = sum(b for k, b in saved.items() if k not in self.known and k not in unrooted)
            for k in unrooted:
                if k in saved:
                    self.known[k] = holder
                    self.via_graph.add(k)
        for key in unrooted:
            if key not in self.known:
                self.known[key] = UNKNOWN
                self.holders.setdefault(UNKNOWN, ("object", "unknown"))
        return len(candidates)

    @staticmethod
    def key_of(t):
        storage = t.untyped_storage()
        device = "cpu" if t.is_cpu else str(t.device)
        return (device, storage.data_ptr(), storage.nbytes())

    def roots(self, tensors, targets, ours):
        """id(tensor) -> (holder path, container type, place), climbing referrers level by
        level: one scan of the heap per level for all tensors at once."""
        modules = {}
        for name, module in list(sys.modules.items()):
            # Modules only: some packages put other objects in sys.modules, whose attributes
            # may import or compute.
            if not issubclass(type(module), types.ModuleType):
                continue
            d = module.__dict__
            if type(d) is dict and not name.startswith("memwarden"):
                if name == "__main__":
                    stem = os.path.basename(str(d.get("__file__") or "__main__"))
                    name = os.path.splitext(stem)[0] or name
                modules.setdefault(id(d), name)
        frontier = {id(t): t for t in tensors}
        # id(child) -> [(id(referrer), label of the edge, referrer)]
        up = {}
        ignore = set(ours)
        ignore.update((id(tensors), id(targets), id(up), id(sys._getframe())))
        found = {}
        found_at = {}
        climbed = set()
        memo = {}

        def resolve(oid, depth=0):
            """(path, [(object, its path)] from the root down) for object `oid`, or None."""
            if oid in memo:
                return memo[oid]
            memo[oid] = None
            result = None
            if oid in found_at:
                root, label = found_at[oid]
                result = (root + label, [])
            elif depth < MAX_DEPTH:
                for rid, label, ref in up.get(oid, ()):
                    above = resolve(rid, depth + 1)
                    if above is not None:
                        result = (above[0] + label, above[1] + [(ref, above[0])])
                        break
            memo[oid] = result
            return result

        # id(obj) -> the storages it leads down to: a referrer is climbed only while one of
        # those has no root yet, or the frontier grows with every shared container it meets.
        reach = {id(t): {targets[id(t)]} for t in tensors}
        wanted = set(targets.values())
        for _ in range(MAX_DEPTH):
            if not frontier:
                break
            objs = list(frontier.values())
            ignore.update((id(objs), id(frontier)))
            referrers = gc.get_referrers(*objs)
            ignore.add(id(referrers))
            next_frontier = {}
            for ref in referrers:
                rid = id(ref)
                if rid in ignore or rid in frontier:
                    continue
                kind = type(ref)
                if kind.__name__ == "frame" and self.is_ours(ref):
                    continue
                for child in gc.get_referents(ref):
                    cid = id(child)
                    if cid not in frontier:
                        continue
                    label = self.label(ref, child)
                    if rid in modules:
                        found_at.setdefault(cid, (modules[rid], label))
                    elif kind.__name__ == "frame":
                        code = ref.f_code
                        found_at.setdefault(cid, ("%s() local" % code.co_name, label))
                    elif issubclass(kind, type):
                        found_at.setdefault(cid, ("%s.%s" % (ref.__module__, ref.__qualname__), label))
                    else:
                        up.setdefault(cid, []).append((rid, label, ref))
                        reach.setdefault(rid, set()).update(reach.get(cid, ()))
                        if rid not in climbed:
                            climbed.add(rid)
                            next_frontier[rid] = ref
            del objs, referrers
            # Climbing stops once every storage has a tensor with a root: a level is a scan
            # of the whole heap, its cost growing with the objects looked for.
            memo.clear()
            rooted = {targets[id(t)] for t in tensors if resolve(id(t)) is not None}
            open_keys = wanted - rooted
            if not open_keys:
                break
            frontier = {}
            for rid, ref in next_frontier.items():
                if reach.get(rid, set()) & open_keys and len(frontier) < MAX_FRONTIER:
                    frontier[rid] = ref
        # Each tensor: climb its chain of referrers down to a root.
        for t in tensors:
            r = resolve(id(t))
            if r is None:
                continue
            path, chain = r
            # The holder: the innermost container with a name of its own (a global list, an
            # attribute's dict), not an element of it that changes from trial to trial.
            named = [(obj, p) for obj, p in chain if "[…]" not in p]
            if named:
                top, path = named[-1]
                container = _describe(top)
            elif chain:
                top, path = chain[0]
                container = _describe(top)
            else:
                container = "tensor"
            if any(type(obj).__name__ == "cell" for obj, _ in chain):
                place = "closure"
            elif "() local" in path:
                place = "local variable"
            elif len(path.split(".")) > 2 or any(issubclass(type(obj), type) for obj, _ in chain):
                place = "attribute"
            else:
                place = "module-level"
            found[id(t)] = (path, container, place)
        return found

    def is_ours(self, frame):
        return frame.f_code.co_filename.startswith(self.here)

    @staticmethod
    def label(ref, child):
        """The step from `ref` to `child` in a path; varying keys and indexes collapse to
        `[…]` so that one cache is one holder from trial to trial."""
        if issubclass(type(ref), dict):
            for key, value in ref.items():
                if value is child:
                    if isinstance(key, str) and key.isidentifier():
                        return "." + key
                    return "[…]"
            return ""
        name = type(ref).__name__
        if name == "tuple" and type(child).__name__ == "cell":
            return ""  # a function's __closure__
        if issubclass(type(ref), (list, tuple, set, frozenset)):
            return "[…]"
        if name == "cell":
            return ""
        if name == "frame":
            for key, value in ref.f_locals.items():
                if value is child:
                    return "." + key
            return ""
        if name == "function":
            return ""
        d = getattr(ref, "__dict__", None)
        if type(d) is dict:
            if d is child:
                return ""
            for key, value in d.items():
                if value is child:
                    return "." + key
        return ""

    def graph_storages(self, tensors, torch):
        """The storages of the saved tensors an autograd graph keeps (key -> bytes), leaving
        out those already counted (parameters, the set-up's data)."""
        seen_nodes = set()
        storages = {}
        stack = [t.grad_fn for t in tensors if t.grad_fn is not None]
        visible = self.known.keys() | self.before
        while stack and len(seen_nodes) < MAX_NODES:
            node = stack.pop()
            if node is None or id(node) in seen_nodes:
                continue
            seen_nodes.add(id(node))
            names = self.saved_names.get(type(node))
            if names is None:
                names = [n for n in dir(node) if n.startswith("_saved_") and not n.endswith("sizes")]
                self.saved_names[type(node)] = names
            for name in names:
                try:
                    value = getattr(node, name)
                except Exception:
                    continue
                for saved in value if isinstance(value, (tuple, list)) else (value,):
                    if isinstance(saved, torch.Tensor):
                        try:
                            key = self.key_of(saved)
                        except Exception:
                            continue
                        if key not in visible and key[1] != 0:
                            storages[key] = key[2]
            for next_fn, _ in getattr(node, "next_functions", ()):
                if next_fn is not None:
                    stack.append(next_fn)
        return storages

    def record(self, trial, live):
        groups = {}
        total = 0
        tensors = 0
        for key, on in live.items():
            total += key[2]
            tensors += len(on)
            path = self.known.get(key)
            if path is None:
                continue
            g = groups.get(path)
            if g is None:
                container, place = self.holders.get(path, ("object", "unknown"))
                g = groups[path] = {
                    "holder": path,
                    "container": container,
                    "place": place,
                    "device": key[0],
                    "bytes": 0,
                    "storages": 0,
                    "tensors": 0,
                    "largest_bytes": 0,
                    "view_bytes": 0,
                    "graph_bytes": 0,
                }
            if key in self.via_graph:
                g["graph_bytes"] += key[2]
            else:
                g["bytes"] += key[2]
                g["storages"] += 1
                g["tensors"] += len(on)
                g["largest_bytes"] = max(g["largest_bytes"], key[2])
                g["view_bytes"] += self.views.get(key, 0)
            g["graph_bytes"] += self.graph.get(key, 0)
        # Storages gone stop being remembered.
        for key in [k for k in self.known if k not in live]:
            del self.known[key]
            self.graph.pop(key, None)
            self.views.pop(key, None)
            self.via_graph.discard(key)
        holders = sorted(groups.values(), key=lambda g: -(g["bytes"] + g["graph_bytes"]))
        return {
            "kind": "tensors",
            "trial": str(trial),
            "tensors": tensors,
            "storages": len(live),
            "bytes": total,
            "holders": holders[:TOP_HOLDERS],
        }
