"""The embedded Celery broker: kombu's filesystem transport, made safe for several processes.

kombu's own `_put` creates the message file in the queue folder and then writes it, and `_get`
renames whatever it lists there without taking the writer's lock. A consumer that lists the file
between the two reads an empty message and the worker dies (`Unrecoverable error:
JSONDecodeError`): the demo's Celery worker did after 14 and 25 minutes of an hour-long run, with
the web, beat and worker publishing every second. Here a message is written beside the folder's
names (a dot-file no queue matches) and renamed in when complete, so a reader sees all of it or
nothing; a file that still cannot be read (left by an older writer, a full disk) is moved to
`rejected/` with a warning instead of taking the worker and every later task down with it.
"""

from __future__ import annotations

import logging
import os
import uuid
from queue import Empty
from time import monotonic

from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps, loads

logger = logging.getLogger("stagepulse.broker")


class AtomicFilesystemChannel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        """Write the whole message under a name no queue reads, then rename it into place."""
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".{name}.part")
        try:
            with open(partial, "wb") as file:
                file.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue):
        """The next readable message of `queue`; an unreadable one is set aside, not fatal."""
        while True:
            payload, path = self._take(queue)
            try:
                return loads(payload)
            except ValueError:
                self._reject(path, payload)

    def _take(self, queue) -> tuple[str, str]:
        """(text, where it was moved) of the oldest message file of `queue`; Empty if none."""
        wanted = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.startswith(".") or name.partition(".")[2] != wanted:
                continue
            source = os.path.join(self.data_folder_in, name)
            taken = os.path.join(self._taken_folder(), name)
            try:
                os.replace(source, taken)  # another consumer may have taken it first
            except OSError:
                continue
            try:
                with open(taken, "rb") as file:
                    payload = file.read().decode("utf-8", errors="replace")
                if not self.store_processed:
                    os.remove(taken)
            except OSError as exc:
                raise filesystem.ChannelError(f"Cannot read file {taken!r} from queue.") from exc
            return payload, taken
        raise Empty()

    def _taken_folder(self) -> str:
        # the processed folder sits beside the queue folder (same filesystem: a rename is atomic)
        return self.processed_folder if self.store_processed else self._private_folder("taken")

    def _private_folder(self, name: str) -> str:
        folder = os.path.join(self.data_folder_in, name)
        os.makedirs(folder, exist_ok=True)
        return folder

    def _reject(self, path: str, payload: str) -> None:
        kept = os.path.join(self._private_folder("rejected"), os.path.basename(path))
        with open(kept, "w", encoding="utf-8") as file:
            file.write(payload)
        logger.warning(
            "broker: message %s is not JSON (%d bytes); kept in %s, the queue goes on",
            os.path.basename(path),
            len(payload),
            kept,
        )


class AtomicFilesystemTransport(filesystem.Transport):
    Channel = AtomicFilesystemChannel
