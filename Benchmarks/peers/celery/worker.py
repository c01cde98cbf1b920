"""The Celery peer of the deadline-curve benchmarks: a plain Celery 5 pool computing y = A @ x,
or classifying images with ONNX Runtime.

Two tasks:
- ``matvec(x: bytes) -> bytes``: x is n float32 values (raw bytes, native order), the answer is
  A @ x as m float32 values. A is the float32 .npy at ``SR_PEER_MATRIX``.
- ``classify(pixels: bytes, count: int) -> bytes``: ``count`` images as raw uint8 pixels (the
  model's input shape per image, e.g. 1×28×28), preprocessed as the model's provenance says
  (float32(pixel) / 255) and classified by ONNX Runtime; the answer is one uint8 label per image
  (argmax of the logits). The model is the ONNX file at ``SR_PEER_MODEL``, in one CPU session
  per worker process with intra_op_num_threads = inter_op_num_threads = 1 and sequential
  execution (as Benchmarks/peers/onnxruntime/ort_bench.py). onnxruntime is imported only when
  SR_PEER_MODEL is set (install.sh --with-onnxruntime puts it in the venv).
Whichever of SR_PEER_MATRIX and SR_PEER_MODEL is set is loaded ONCE per worker process when the
worker starts (so a worker that answers ``celery inspect ping`` already holds it in memory). The broker is the pool's private RabbitMQ (``SR_AMQP_URL``); Celery uses
its own queue ``peer.celery`` (and its own ``celery*``/``*.pidbox`` names), never the ``sr.*``
queues of our pool.

Started by workers.sh as
    celery -A worker worker --pool threads --concurrency 1 -Q peer.celery ...
with OPENBLAS_NUM_THREADS=1: one task at a time per worker, one BLAS thread (parallelism comes
from replicas, as in our pool).

Why ``--pool threads`` and not ``--pool solo`` (workers.sh --pool solo still runs it): with the
solo pool the task runs inside the event loop's socket callback, and with prefetch 1 the loop
then sleeps in poll() until its next timer (up to ~10 s here without AMQP heartbeats, ~2 s with
them) although the next task message has already been delivered to the worker (RabbitMQ shows
it unacknowledged, the socket's receive queue is empty). Measured on 2 workers: a burst of 100
jobs took 10–47 s with solo against 0.3–0.5 s with threads or prefork, and a Poisson stream of
60 jobs/s had a p50 of 8.9 s with solo against 10–14 ms with threads. The threads pool with
concurrency 1 still runs one task at a time in the worker process, and its idle latency equals
solo's (p50 7.6–8.6 ms at 4096²). Known upstream: celery/celery#7718, kombu PR #1587 ("hub: tick
delay fix", single worker with no prefetch).

The client (client.py) imports this module for the app and the task signature only; it never
loads the matrix through it.
"""

import os
import urllib.parse

import numpy as np
from celery import Celery, signals

QUEUE = "peer.celery"


def broker_url() -> str:
    """SR_AMQP_URL (amqp://user:pass@127.0.0.1:PORT/%2F) as a Celery broker URL.

    Kombu maps ``amqp://`` to its py-amqp transport already; we spell it ``pyamqp://`` to make
    the choice explicit (librabbitmq is not installed and never picked). Kombu percent-decodes
    the path, so ``/%2F`` is the vhost "/".
    """
    url = os.environ.get("SR_AMQP_URL", "")
    if not url:
        raise SystemExit("worker.py: SR_AMQP_URL is not set (source the pool's pool.env)")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("amqp", "pyamqp"):
        raise SystemExit(f"worker.py: SR_AMQP_URL must be amqp://…, got scheme {parts.scheme!r}")
    return urllib.parse.urlunsplit(("pyamqp",) + tuple(parts[1:]))


app = Celery("srpeer", broker=broker_url(), backend="rpc://")
app.conf.update(
    # Pickle both ways: the fastest serialiser Celery offers for a bytes payload (json would
    # base64 it). Everyone on this broker is ours (loopback, private node).
    task_serializer="pickle",
    result_serializer="pickle",
    accept_content=["pickle"],
    result_accept_content=["pickle"],
    task_default_queue=QUEUE,
    task_default_exchange=QUEUE,
    task_default_routing_key=QUEUE,
    # Non-persistent task and result messages: our pool's messages are durable+confirmed, but
    # a plain Celery deployment tuned for latency would not persist; say so in the report.
    task_default_delivery_mode="transient",
    result_persistent=False,
    # acks_late ON with prefetch 1: a worker holds at most one unacknowledged task, so the next
    # task goes to whichever worker is idle. With early acks the broker would push a second task
    # into a busy solo worker's socket while the other worker might be free (head-of-line
    # blocking under a Poisson load). This is also what our consumers do (prefetch 1, ack after
    # the result is published). (Late acks also redeliver a crashed worker's task; no run
    # here relies on that.)
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_track_started=False,
    task_ignore_result=False,
    result_expires=None,
    worker_send_task_events=False,
    task_send_sent_event=False,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)

_A = None  # the matrix, one copy per worker process


def load_matrix() -> np.ndarray:
    path = os.environ.get("SR_PEER_MATRIX")
    if not path:
        raise RuntimeError("SR_PEER_MATRIX is not set (path of the float32 .npy matrix)")
    a = np.load(path)
    if a.dtype != np.float32 or a.ndim != 2:
        raise RuntimeError(f"{path}: want a 2-D float32 matrix, got {a.dtype} {a.shape}")
    a = np.ascontiguousarray(a)
    a.sum()  # touch every page now, not during the first task
    return a


_session = None  # the ONNX Runtime session, one per worker process


def load_session():
    path = os.environ.get("SR_PEER_MODEL")
    if not path:
        raise RuntimeError("SR_PEER_MODEL is not set (path of the .onnx classifier)")
    import onnxruntime as ort  # only the classifying pool needs it
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    shape = [d if isinstance(d, int) else 1 for d in session.get_inputs()[0].shape]
    session.run(None, {session.get_inputs()[0].name: np.zeros(shape, dtype=np.float32)})  # warm-up
    return session


@signals.worker_init.connect
def _load_on_start(**_):
    # worker_init fires once in the worker's main process, before it consumes: the threads (and
    # solo) pool run tasks in this process; prefork children inherit A when they are forked.
    global _A, _session
    if not os.environ.get("SR_PEER_MATRIX") and not os.environ.get("SR_PEER_MODEL"):
        raise RuntimeError("set SR_PEER_MATRIX (matvec) or SR_PEER_MODEL (classify)")
    if os.environ.get("SR_PEER_MATRIX"):
        _A = load_matrix()
        print(f"peer.celery: loaded {os.environ['SR_PEER_MATRIX']} {_A.shape} "
              f"(OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')})", flush=True)
    if os.environ.get("SR_PEER_MODEL"):
        _session = load_session()
        print(f"peer.celery: loaded {os.environ['SR_PEER_MODEL']} (ONNX Runtime, one thread)", flush=True)


@app.task(name="peer.matvec")
def matvec(x: bytes) -> bytes:
    global _A
    if _A is None:  # not started through `celery worker` (e.g. a test calling it inline)
        _A = load_matrix()
    v = np.frombuffer(x, dtype=np.float32)
    if v.shape[0] != _A.shape[1]:
        raise ValueError(f"x has {v.shape[0]} values, A has {_A.shape[1]} columns")
    return (_A @ v).tobytes()


@app.task(name="peer.classify")
def classify(pixels: bytes, count: int) -> bytes:
    global _session
    if _session is None:  # not started through `celery worker`
        _session = load_session()
    inp = _session.get_inputs()[0]
    x = np.frombuffer(pixels, dtype=np.uint8).reshape([count] + list(inp.shape[1:]))
    logits = _session.run(None, {inp.name: x.astype(np.float32) / np.float32(255.0)})[0]
    return logits.argmax(1).astype(np.uint8).tobytes()
