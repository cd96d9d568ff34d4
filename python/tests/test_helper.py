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

        self.assertEqual(
            self.lines(body),
            ["MEMWARDEN trial_start 7 lr=0.01 optimizer=adam_w", "MEMWARDEN trial_end 7 status=complete"],
        )

    def test_a_trial_that_raises_ends_as_failed_and_the_error_goes_on(self):
        def body():
            with self.assertRaises(KeyError):
                with memwarden.trial("a b"):
                    raise KeyError("x")

        self.assertEqual(self.lines(body)[-1], "MEMWARDEN trial_end a_b status=fail")


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


if __name__ == "__main__":
    unittest.main()
