"""SST-2 (binary sentiment): GLUE's copy from the Hugging Face hub, or local ``LABEL SENTENCE`` files.

GLUE's test split has no labels, so for the hub copy the test split is a seeded hold-out of the
training split with ``test_size`` examples; with local files (``path``) the three files are used as is.
"""

from __future__ import annotations

import random

from distilkit.data.module import Example
from distilkit.data.text_lines import TextLinesData
from distilkit.hub import HubUnavailable, hub_reachable


class SST2Data(TextLinesData):
    def __init__(
        self,
        path: str | None = None,
        encoding: str = "utf-8",
        hub_name: str = "nyu-mll/glue",
        hub_config: str = "sst2",
        test_size: int = 1821,
        seed: int = 0,
        max_length: int = 64,
        batch_size: int = 32,
        num_workers: int = 0,
        bucket_by_length: bool = False,
        holdout: int = 0,
    ):
        super().__init__(
            path=path,
            encoding=encoding,
            max_length=max_length,
            batch_size=batch_size,
            num_workers=num_workers,
            bucket_by_length=bucket_by_length,
            holdout=holdout,
        )
        self.hub_name, self.hub_config = hub_name, hub_config
        self.test_size, self.seed = test_size, seed

    def load_splits(self) -> dict[str, list[Example]]:
        if self.path is not None:
            return super().load_splits()
        return self._load_hub()

    def _load_hub(self) -> dict[str, list[Example]]:
        import datasets

        try:
            ds = datasets.load_dataset(self.hub_name, self.hub_config)
        except Exception as err:  # network, cache or name problems all end here
            if hub_reachable():
                raise
            raise HubUnavailable(
                "data.hub_name", f"{self.hub_name}/{self.hub_config}", "data.path=DIR (train.txt/dev.txt/test.txt)"
            ) from err
        train = [Example(r["sentence"], int(r["label"])) for r in ds["train"]]
        random.Random(self.seed).shuffle(train)
        dev = [Example(r["sentence"], int(r["label"])) for r in ds["validation"]]
        return {"train": train[self.test_size :], "dev": dev, "test": train[: self.test_size]}
