"""The embedded broker (stagepulse/broker.py): a consumer never reads a message that is still
being written, and one unreadable message file does not stop the queue (it killed the demo's
Celery worker with `Unrecoverable error: JSONDecodeError` after 14 minutes)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from kombu import Connection

from stagepulse.broker import AtomicFilesystemTransport


@pytest.fixture
def broker(tmp_path):
    """A connection on a fresh folder. kombu remembers declared exchanges per transport class
    (in memory), so each test also uses a queue name of its own."""
    folder = tmp_path / "broker"
    folder.mkdir()
    (tmp_path / "control").mkdir()
    options = {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "control_folder": str(tmp_path / "control"),  # kombu's default is ./control
        "processed_folder": str(folder / "processed"),
    }
    with Connection("filesystem://", transport=AtomicFilesystemTransport,
                    transport_options=options) as connection:  # fmt: skip
        yield connection, folder, f"tasks{uuid.uuid4().hex}"


def test_messages_arrive_once_each_while_several_writers_publish(broker):
    connection, _, name = broker
    sent = [{"writer": w, "n": n} for w in range(4) for n in range(100)]

    def publish(writer):
        with connection.clone() as mine:
            queue = mine.SimpleQueue(name)
            for message in sent:
                if message["writer"] == writer:
                    queue.put(message)
            queue.close()

    # the queue is declared before the writers start: kombu's own exchange-table file (not the
    # messages) is created without a lock when it does not exist yet
    queue = connection.SimpleQueue(name)
    writers = [threading.Thread(target=publish, args=(w,)) for w in range(4)]
    for thread in writers:
        thread.start()
    received = []
    while len(received) < len(sent):
        message = queue.get(timeout=10)
        received.append(message.payload)
        message.ack()
    for thread in writers:
        thread.join()
    assert sorted(map(str, received)) == sorted(map(str, sent))
    queue.close()


def test_a_message_still_being_written_is_not_read(broker):
    connection, folder, name = broker
    queue = connection.SimpleQueue(name)
    # what a writer holds before its rename: a dot-file of the queue's name, half written
    (folder / f".1_abc.{name}.msg.part").write_text('{"body": "hal')
    with pytest.raises(queue.Empty):
        queue.get(timeout=0.2)
    queue.put({"whole": True})
    message = queue.get(timeout=5)
    assert message.payload == {"whole": True}
    message.ack()
    queue.close()


def test_an_unreadable_message_is_set_aside_and_the_next_one_delivered(broker, caplog):
    connection, folder, name = broker
    queue = connection.SimpleQueue(name)
    # an empty message file, as kombu's own transport could leave or hand over; "0_" sorts before
    # every name the transport gives (they start with the monotonic clock in ms)
    (folder / f"0_broken.{name}.msg").write_bytes(b"")
    queue.put({"after": "the broken one"})
    message = queue.get(timeout=5)
    assert message.payload == {"after": "the broken one"}
    message.ack()
    rejected = list(Path(folder, "rejected").iterdir())
    assert [p.name for p in rejected] == [f"0_broken.{name}.msg"]
    assert "is not JSON" in caplog.text and "the queue goes on" in caplog.text
    queue.close()
