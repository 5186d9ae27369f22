"""What the test servers share: ``with X(...) as x`` starts one and closes it on the way out."""

from __future__ import annotations

from typing import Self


class Started:
    """A server (or set of them) used as a context manager: ``start()`` on entering, ``close()``
    on leaving, whatever happened inside."""

    def start(self) -> Self:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
