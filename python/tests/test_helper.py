"""The helper package on its own, without memwarden: markers, the gate client, failures.

    PYTHONPATH=python python3 -m unittest discover -s python/tests
"""

import contextlib
import io
import os
import socket
import tempfile
import threading
import unittest

import memwarden


class Markers(unittest.TestCase):
    def lines(self, body):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            body()
        return out.getvalue().splitlines()

    def test_a_trial_prints_its_start_with_parameters_and_its_end(self):
        def body():
            with memwarden.trial(7, lr=0.01, optimizer="adam w"):
                pass

        start, end = self.lines(body)
        self.assertEqual(start, "MEMWARDEN trial_start 7 lr=0.01 optimizer=adam_w")
        self.assertTrue(end.startswith("MEMWARDEN trial_end 7 status=complete memwarden_anon="), end)

    def test_the_end_carries_the_memory_the_process_holds_then(self):
        keep = []

        def body():
            with memwarden.trial(1):
                keep.append(bytearray(32 << 20))

        before = memwarden.own_memory()["memwarden_anon"]
        end = self.lines(body)[-1]
        fields = dict(word.split("=") for word in end.split()[3:])
        self.assertEqual(set(fields), {"status", "memwarden_anon", "memwarden_file", "memwarden_shmem"})
        grew = int(fields["memwarden_anon"]) - before
        self.assertTrue(31 << 20 <= grew <= 40 << 20, grew)

    def test_a_trial_that_raises_ends_as_failed_and_the_error_goes_on(self):
        def body():
            with self.assertRaises(KeyError):
                with memwarden.trial("a b"):
                    raise KeyError("x")

        self.assertTrue(self.lines(body)[-1].startswith("MEMWARDEN trial_end a_b status=fail memwarden_anon="))


class Gate(unittest.TestCase):
    def serve(self, answers):
        directory = tempfile.mkdtemp()
        path = os.path.join(directory, "gate")
        server = socket.socket(socket.AF_UNIX)
        server.bind(path)
        server.listen(4)
        asked = []

        def answer():
            for reply in answers:
                connection, _ = server.accept()
                with connection:
                    asked.append(connection.makefile().readline().strip())
                    connection.sendall((reply + "\n").encode())
            server.close()

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        return path, asked, thread

    def test_without_memwarden_the_gate_says_go(self):
        os.environ.pop("MEMWARDEN_GATE", None)
        self.assertTrue(memwarden.gate())

    def test_wait_then_go(self):
        path, asked, thread = self.serve(["wait 0.01", "go"])
        os.environ["MEMWARDEN_GATE"] = path
        try:
            self.assertTrue(memwarden.gate(3))
        finally:
            del os.environ["MEMWARDEN_GATE"]
        thread.join(5)
        self.assertEqual(asked, ["trial 3", "trial 3"])

    def test_abort_ends_the_loop(self):
        path, _, thread = self.serve(["abort"])
        os.environ["MEMWARDEN_GATE"] = path
        try:
            self.assertFalse(memwarden.gate())
        finally:
            del os.environ["MEMWARDEN_GATE"]
        thread.join(5)

    def test_an_unreachable_gate_says_go(self):
        os.environ["MEMWARDEN_GATE"] = "/nonexistent/gate"
        try:
            self.assertTrue(memwarden.gate())
        finally:
            del os.environ["MEMWARDEN_GATE"]


def traced_trials(env, trials, work):
    """Runs `work(number)` in `trials` trials (memwarden.trial) under the tracer, with `env` set
    for it; the records it wrote."""
    import json

    directory = tempfile.mkdtemp()
    env = dict(env, MEMWARDEN_TRACE_DIR=directory)
    os.environ.update(env)
    try:
        memwarden._trace.start()
        with contextlib.redirect_stdout(io.StringIO()):
            for number in range(trials):
                with memwarden.trial(number):
                    work(number)
    finally:
        memwarden._trace._fail(RuntimeError("test over"))
        for name in env:
            del os.environ[name]
    records = []
    for name in os.listdir(directory):
        with open(os.path.join(directory, name)) as f:
            records += [json.loads(line) for line in f]
    return records


class Tracer(unittest.TestCase):
    def test_boundaries_do_nothing_when_not_tracing(self):
        memwarden._trace.boundary("end", 1)  # no state, no file, no error

    def test_the_tracer_never_initialises_cuda(self):
        import sys
        import types

        calls = []
        cuda = types.SimpleNamespace(
            is_initialized=lambda: False,
            device_count=lambda: calls.append("device_count") or 1,
            memory_stats=lambda device=None: calls.append("memory_stats") or {},
        )
        sys.modules["torch"] = types.SimpleNamespace(cuda=cuda)
        try:
            directory = tempfile.mkdtemp()
            state = memwarden._trace._State(directory)
            state.torch_report(0)
        finally:
            del sys.modules["torch"]
        self.assertEqual(calls, [], "only is_initialized() may be called before the worker's CUDA")
        self.assertEqual(os.listdir(directory), [])

    def test_gpu_lines_come_from_pytorch_and_its_first_snapshot_is_taken_untraced(self):
        """With the stand-in torch (fixtures/python/stub_torch): the tensor kept per trial is
        named by its line, and the first snapshot, which imports much of PyTorch, runs with
        tracemalloc stopped and is followed by a new epoch."""
        import sys

        stub = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "python", "stub_torch")
        sys.path.insert(0, os.path.realpath(stub))
        saved = sys.modules.pop("torch", None)
        import torch

        snapshots = []
        real_snapshot = torch.cuda.memory._snapshot
        torch.cuda.memory._snapshot = lambda: snapshots.append(1) or real_snapshot()
        kept = []
        keep = lambda number: kept.append(torch.ones(1 << 20, device="cuda"))  # the kept line
        try:
            # Traced from the first trial, as a process without torch is (no diagnosis awaited).
            records = traced_trials({"MEMWARDEN_DIAGNOSE": "always"}, 4, keep)
        finally:
            sys.path.remove(os.path.realpath(stub))
            sys.modules.pop("torch", None)
            if saved is not None:
                sys.modules["torch"] = saved
        self.assertIs(torch.cuda.symbolized_while_tracing, False, "frames are first named untraced")
        epochs = [r["epoch"] for r in records if r["kind"] == "epoch"]
        self.assertEqual(epochs[:2], [0, 1], "tracing starts again in a new epoch after the warm-up")
        gpu = [r for r in records if r["kind"] == "sites" and r.get("memory") == "gpu"]
        self.assertEqual(len(snapshots), 1 + len(gpu), "one warm-up, then one snapshot per trial end")
        last = gpu[-1]["sites"][0]
        self.assertEqual((os.path.basename(last["file"]), last["blocks"]), ("test_helper.py", 3))
        with open(__file__) as f:
            self.assertIn("# the kept line", f.read().splitlines()[last["line"] - 1])



class Diagnose(unittest.TestCase):
    def test_memory_that_grew_and_still_grows_is_suspected(self):
        suspected = memwarden._diagnose.suspected
        mib = 1 << 20
        self.assertIsNone(suspected([0, mib, 2 * mib, 3 * mib]), "four levels are not five")
        self.assertEqual(
            suspected([9 * mib, 0, mib, 2 * mib, 3 * mib, 4 * mib]),
            "anonymous memory grew 4.0 MiB over 4 trials",
        )
        self.assertIsNone(suspected([0, 0, 0, 0, mib - 1]), "under the least growth")
        self.assertIsNone(suspected([0, 4 * mib, 9 * mib, 3 * mib, 2 * mib]), "a peak given back")
        self.assertIsNone(suspected([5 * mib, 4 * mib, 3 * mib, 2 * mib, mib]), "shrinking")
        self.assertIsNotNone(suspected([0, mib, 3 * mib, 2 * mib, 2.5 * mib]), "noise under the least")

    def run_study(self, grow):
        """Twelve trials in a process that imported torch (a stand-in without tensors), each
        keeping `grow` bytes; the tracer's records."""
        import sys
        import types

        saved = sys.modules.get("torch")
        sys.modules["torch"] = types.SimpleNamespace()
        kept = []
        keep = lambda number: kept.append(bytearray(b"x" * grow))  # the kept line
        try:
            return traced_trials({"MEMWARDEN_DIAGNOSE_TRIALS": "3"}, 12, keep)
        finally:
            sys.modules.pop("torch")
            if saved is not None:
                sys.modules["torch"] = saved

    def test_a_torch_process_is_traced_only_in_a_diagnosis_once_its_memory_grows(self):
        records = self.run_study(4 << 20)
        diagnoses = [r for r in records if r["kind"] == "diagnose"]
        self.assertGreaterEqual(len(diagnoses), 1, records)
        first = diagnoses[0]
        self.assertEqual((first["trial"], first["trials"]), ("4", 3), "five levels read, then three trials")
        self.assertRegex(first["why"], r"^anonymous memory grew \d+\.\d MiB over 4 trials$")
        heap = [r["trial"] for r in records if r["kind"] == "sites" and r.get("memory", "python_heap") == "python_heap"]
        self.assertEqual(heap[:3], ["5", "6", "7"], "the diagnosed trials, and no trial before")
        self.assertLess(len(heap), 12 - 5, "trials after a diagnosis wait for memory to grow anew")
        line = heap and [r for r in records if r["kind"] == "sites" and r["trial"] == "6"][0]["sites"][0]
        with open(__file__) as f:
            self.assertIn("# the kept line", f.read().splitlines()[line["line"] - 1])

    def test_a_torch_process_whose_memory_stays_flat_is_never_traced(self):
        records = self.run_study(0)
        kinds = {r["kind"] for r in records}
        self.assertNotIn("diagnose", kinds, records)
        self.assertNotIn("sites", kinds, records)
        self.assertNotIn("epoch", kinds, records)


if __name__ == "__main__":
    unittest.main()
